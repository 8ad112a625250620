"""Write benchmarks/data/identifier_corpus.json: a held-out incident chat full of near-duplicates.

The chat is an operations conversation about a payments outage, written for this project:
sequential tickets (INC-7000…), run numbers (run #1000…), dashboard URLs with numeric tails
(…/d/pay-10…), versions (v2.0.3…), migration names (2024_00_add_index…), short git hashes,
cloud instance ids, order ids, dates, addresses, prices, flight numbers and accented names,
in prose. Identifiers of one family sit next to each other on the same page, so a repair that
picks the wrong neighbour is seen. Every turn lists the identifiers planted in it (`ids`,
with their family), the ground truth the benchmark looks for beside `optimem.pages.verbatim.extract`.

Deterministic (seeded); rerun to regenerate the same file:

    python benchmarks/make_identifier_corpus.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "data" / "identifier_corpus.json"
SEED = 18

NAMES = (
    "José Álvarez",
    "Zoë Brontë",
    "Chloé Dubois",
    "Søren Nørgaard",
    "Łukasz Wiśniewski",
    "François Lefèvre",
    "Björn Åström",
    "Jürgen Müller",
    "Inés Muñoz",
    "Ana Łęcka",
)

OPENERS_USER = (
    "Quick update from the bridge.",
    "Okay, next thing.",
    "Sorry, pager went off again.",
    "Can you keep track of this for me?",
    "Adding to the timeline.",
    "Heads up, this one matters.",
    "Before I forget:",
    "Another data point.",
)
OPENERS_ASSISTANT = (
    "Noted.",
    "Got it, I have added that to the incident notes.",
    "Understood. Here is what I have so far.",
    "Thanks. Summary of the current state:",
    "Recorded.",
    "Okay, cross-checking against what we had earlier.",
)


class Families:
    """Sequential identifier generators: each call gives the next of its family."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n: dict[str, int] = {}
        self.hashes = [f"{rng.getrandbits(28):07x}" for _ in range(24)]
        self.instances = [f"i-0{rng.getrandbits(64):016x}"[:19] for _ in range(16)]

    def _next(self, family: str, size: int) -> int:
        k = self.n.get(family, 0)
        self.n[family] = k + 1
        return k % size

    def ticket(self) -> str:
        return f"INC-{7000 + self._next('ticket', 20)}"

    def run(self) -> str:
        return f"#{1000 + self._next('run', 24)}"

    def dashboard(self) -> str:
        return f"https://grafana.example.com/d/pay-{10 + self._next('dashboard', 10)}"

    def version(self) -> str:
        return f"v2.0.{3 + self._next('version', 14)}"

    def migration(self) -> str:
        k = self._next("migration", 12)
        what = ("add_index", "add_index_orders", "drop_legacy_col", "add_index_refunds")[k % 4]
        return f"2024_{k:02d}_{what}"

    def commit(self) -> str:
        return self.hashes[self._next("commit", len(self.hashes))]

    def instance(self) -> str:
        return self.instances[self._next("instance", len(self.instances))]

    def order(self) -> str:
        return f"ORD-{58800 + 3 * self._next('order', 30)}"

    def date(self) -> str:
        return f"2024-05-{1 + self._next('date', 28):02d}"

    def ip(self) -> str:
        return f"10.0.3.{17 + self._next('ip', 20)}"

    def price(self) -> str:
        k = self._next("price", 20)
        return f"${1240 + 9 * k:,}.{(k * 37) % 100:02d}" if k % 2 else f"€{89 + k}.90"

    def flight(self) -> str:
        return ("FL-304", "FL-305", "FL-314", "FL-340", "FL-403", "FL-304A")[self._next("flight", 6)]

    def name(self) -> str:
        return NAMES[self._next("name", len(NAMES))]

    def host(self) -> str:
        return f"db-replica-{1 + self._next('host', 9):02d}.eu-west"


# Each template: text with {family} slots; a family may appear more than once (each slot is
# the next identifier of that family, so neighbours stand side by side).
USER_TEMPLATES = (
    "{ticket} is open for the checkout errors, and {ticket} looks like the same root cause. "
    "Dashboard: {dashboard}",
    "The deploy of {version} went out at 14:05, then {version} at 14:40. Commit {commit} is the "
    "suspect, {commit} was only a config change.",
    "Run {run} failed, run {run} passed, run {run} is still going. Can we compare them?",
    "Migration {migration} is still holding a lock on orders; {migration} is queued after it.",
    "{name} says instance {instance} is at 100% CPU. {instance} next to it is idle.",
    "Customer escalation: order {order} was charged twice ({price} and {price}). "
    "Order {order} from the same card looks fine.",
    "{name} and {name} are joining the bridge. {name} is the payments on-call this week.",
    "Replica {host} lags by 40 seconds, {host} by 3. Primary is at {ip}, the lagging one at {ip}.",
    "Please book {name} on {flight} on {date}; if that is full, {flight} the next day.",
    "The graph at {dashboard} shows the spike starting {date}, and {dashboard} agrees.",
    "Rollback plan: go back to {version}, rerun migration {migration}, then check run {run}.",
    "Refund for {order} is {price}. For {order} it is {price}, approved by {name}.",
    "Security asked about traffic from {ip} and {ip} on {date}. Anything in {ticket}?",
)
ASSISTANT_TEMPLATES = (
    "Tickets so far: {ticket}, {ticket}, {ticket}. The first two are duplicates of the checkout "
    "failure; the third is the refund backlog.",
    "Comparing run {run} with run {run}: the failing one ran on {instance}, the passing one on "
    "{instance}. Both built from commit {commit}.",
    "Deploy history: {version} ({commit}), {version} ({commit}), {version} ({commit}).",
    "Dashboards to watch: {dashboard} (latency), {dashboard} (errors) and {dashboard} (queue depth).",
    "Migrations applied in order: {migration}, {migration}, {migration}. The lock comes from the second one.",
    "Contacts: {name} (payments), {name} (database), {name} (customer support).",
    "Double charges found: {order} ({price}), {order} ({price}), {order} ({price}).",
    "Travel: {name} on {flight}, {name} on {flight}, both on {date}.",
    "Hosts involved: {host} at {ip}, {host} at {ip}. Instance {instance} backs the first.",
    "Timeline: {date} first alert ({ticket}), {date} mitigation, {date} postmortem with {name}.",
    "Runs {run}, {run} and {run} all used {version}; run {run} used {version} and passed.",
    "The error budget report at {dashboard} covers {date} to {date}; cost so far {price}.",
)


def fill(template: str, fam: Families) -> tuple[str, list[dict[str, str]]]:
    """The template with each slot replaced by its family's next identifier, and what went in."""
    out, ids, rest = [], [], template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        family, _, rest = tail.partition("}")
        value = getattr(fam, family)()
        out.append(head + value)
        ids.append({"family": family, "value": value})
    out.append(rest)
    return "".join(out), ids


def build(turns: int = 96) -> dict:
    rng = random.Random(SEED)
    fam = Families(rng)
    chat = []
    for i in range(turns):
        user = i % 2 == 0
        opener = rng.choice(OPENERS_USER if user else OPENERS_ASSISTANT)
        parts, ids = [opener], []
        for _ in range(rng.choice((1, 2, 2))):
            text, got = fill(rng.choice(USER_TEMPLATES if user else ASSISTANT_TEMPLATES), fam)
            parts.append(text)
            ids.extend(got)
        chat.append({"role": "user" if user else "assistant", "content": " ".join(parts), "ids": ids})
    return {
        "description": "Held-out incident chat of near-duplicate identifiers for issue 18's "
        "exactness benchmark (benchmarks/identifier_exactness.py), generated by "
        "benchmarks/make_identifier_corpus.py (seed 18); written for this project, not copied. "
        "`ids` lists the identifiers planted in each turn, with their family.",
        "seed": SEED,
        "turns": chat,
    }


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    doc = json.loads(OUT.read_text(encoding="utf-8"))
    planted = sum(len(t["ids"]) for t in doc["turns"])
    chars = sum(len(t["content"]) for t in doc["turns"])
    print(f"{OUT}: {len(doc['turns'])} turns, {planted} planted identifiers, {chars} characters")


if __name__ == "__main__":
    main()
