#!/usr/bin/env bash
# optimem over HTTP with curl: add turns, compress, fetch the context, recall by query.
#   .venv/bin/optimem serve --db memory.db &        # then:
#   bash examples/rest_client.sh          # OPTIMEM_URL, OPTIMEM_KEY and SESSION are optional
set -euo pipefail
URL="${OPTIMEM_URL:-http://127.0.0.1:8421}"
SESSION="${SESSION:-curl-example}"
AUTH=()
[ -n "${OPTIMEM_KEY:-}" ] && AUTH=(-H "Authorization: Bearer ${OPTIMEM_KEY}")
call() { curl -sS --fail-with-body "${AUTH[@]}" -H 'content-type: application/json' "$@"; echo; }

turns='{"turns": ['
for i in $(seq 1 12); do
  turns+="{\"role\": \"user\", \"content\": \"$i. The billing cutover is Saturday 02:00 UTC, ticket OPS-4821, owner Priya; rollback restores snapshot snap-7f3a9c and repoints DNS for the billing cluster.\"},"
  turns+="{\"role\": \"assistant\", \"content\": \"$i. Noted: replica db-replica-03.eu-west.internal is ready and the overtime budget is 4,200 EUR.\"},"
done
turns="${turns%,}]}"

echo "# add turns";  call -X POST "$URL/v1/sessions/$SESSION/turns" -d "$turns"
echo "# compress";   call -X POST "$URL/v1/compress" -d "{\"session\": \"$SESSION\", \"flush\": true}"
echo "# context (messages with image blocks; base64 cut short here)"
call "$URL/v1/sessions/$SESSION/context?budget_tokens=2000" | cut -c1-300
echo "# recall by query"
call -X POST "$URL/v1/recall" -d "{\"session\": \"$SESSION\", \"query\": \"rollback snapshot\", \"limit\": 2, \"wait\": true}"
echo "# stats";      call "$URL/v1/sessions/$SESSION/stats"
echo "# the first page as PNG"; curl -sS "${AUTH[@]}" -o /tmp/optimem-page.png -w '%{http_code} %{content_type}\n' \
  "$URL/v1/sessions/$SESSION/pages/$(curl -sS "${AUTH[@]}" "$URL/v1/sessions/$SESSION/pages" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pages"][0]["id"])').png"
