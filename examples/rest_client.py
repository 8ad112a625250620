"""Use optimem over HTTP with plain httpx: add turns, compress, fetch the context, recall by query.

bash scripts/install.sh langchain,server            # once: the extras this example needs
.venv/bin/optimem serve --db memory.db               # in another terminal
.venv/bin/python examples/rest_client.py [--url http://127.0.0.1:8421] [--key om_...]
"""

from __future__ import annotations

import argparse
import os

import httpx

CHAT = [
    ("user", "We move the billing database to the new cluster. Ticket OPS-4821 tracks it."),
    ("assistant", "Noted. The replica db-replica-03.eu-west.internal is ready; cutover Saturday 02:00 UTC."),
    ("user", "The rollback plan lives at https://wiki.example.com/ops/billing-cutover and Priya owns it."),
    ("assistant", "Rollback: restore snapshot snap-7f3a9c, repoint DNS, budget 4,200 EUR for overtime."),
] * 15


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("OPTIMEM_URL", "http://127.0.0.1:8421"))
    parser.add_argument(
        "--key", default=os.environ.get("OPTIMEM_KEY"), help="API key (when the server has keys)"
    )
    parser.add_argument("--session", default="rest-example")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}

    with httpx.Client(base_url=args.url, headers=headers, timeout=300) as c:
        turns = [
            {"role": role, "content": f"{i}. {text}", "external_id": f"m{i}"}
            for i, (role, text) in enumerate(CHAT)
        ]
        added = c.post(f"/v1/sessions/{args.session}/turns", json={"turns": turns, "skip_existing": True})
        added.raise_for_status()
        print(f"added {len(added.json()['turn_ids'])} turns (retries are safe: external ids)")

        result = c.post("/v1/compress", json={"session": args.session, "flush": True}).json()
        print(
            f"compress: {len(result['created'])} pages created, {len(result['aged'])} aged, "
            f"context {result['tokens_before']} -> {result['tokens_after']} tokens"
        )

        ctx = c.get(f"/v1/sessions/{args.session}/context", params={"budget_tokens": 2000}).json()
        images = sum(
            1
            for m in ctx["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b["type"] == "image"
        )
        print(f"context: {len(ctx['messages'])} messages ({images} page images), {ctx['tokens']} tokens")

        # wait: first decode pages the background OCR has not reached yet, so the search sees them all
        query = {"session": args.session, "query": "rollback snapshot", "limit": 2, "wait": True}
        hits = c.post("/v1/recall", json=query).json()
        for hit in hits["hits"]:
            print(
                f"hit: page {hit['page_id']} ({hit['mode']}, score {hit['score']:.2f}): {hit['snippet'][:90]}"
            )
        if hits["hits"]:
            page = c.post(
                "/v1/recall", json={"session": args.session, "page_ids": [hits["hits"][0]["page_id"]]}
            ).json()
            read = page["pages"][0]
            print(f"page {read['page_id']} read by {read['backend']} (confidence {read['confidence']:.2f}):")
            print("  " + read["text"][:200].replace("\n", "\n  "))
            exact = dict.fromkeys(v["value"] for v in read["verbatim"] if v["kind"] != "number")
            print("  exact strings kept:", ", ".join(list(exact)[:5]))

        st = c.get(f"/v1/sessions/{args.session}/stats").json()
        print(
            f"stats: {st['text_tokens']} text tokens, the model sees {st['context_tokens']} ({st['savings']:.1f}x fewer)"
        )


if __name__ == "__main__":
    main()
