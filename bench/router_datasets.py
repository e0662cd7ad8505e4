"""Turn the routing datasets into what ``wot-agents router eval`` reads: AGENTS.json + QUERIES.csv.

    python bench/router_datasets.py [--out DIR]

Reads ../shared/data/routing (relative to the repository root; ``WOT_AGENTS_ROUTING_DATA``
overrides). Each dataset becomes agents whose capabilities carry example utterances drawn from the
TRAIN split with a fixed seed, a ``*-val.csv`` drawn from train/val for calibration and tuning,
and a ``*-test.csv`` that nothing is tuned on:

- lmos:          the 11 LMOS benchmark agents, examples = all of train.csv (as LMOS seeds them)
- clinc-intent:  150 agents, one per intent, 10 examples each
- clinc-domain:  10 agents, one per domain, 15 intent capabilities of 10 examples each
- clinc-oos:     the intent agents; test/val add CLINC's out-of-scope queries (expected: no agent);
                 ``clinc-oos-negatives.csv`` holds CLINC's 100 out-of-scope TRAIN queries, for
                 ``router eval --out-of-scope``
- banking77:     77 agents, one per intent, 10 examples each; val = 20 other train rows per intent
- snips:         7 agents, one per intent, 10 examples each; val = its valid split
- banking77-oos: 50 in-scope intent agents, 10 examples each; val/test add the held-out banking
                 intents (in-domain out-of-scope) and out-of-domain queries (Zhang et al. 2021)
- clinc-banking, clinc-credit-cards: CLINC-Single-Domain-OOS, 10 intent agents of one domain each,
                 with the same two kinds of out-of-scope queries

Every dataset also has a zero-shot variant, ``NAME-zs``: the same agents with their examples
removed (only names and descriptions), as most real agents are registered. Besides ``*-val.csv``
and ``*-test.csv`` (everything), ``*-{val,test}-in.csv``, ``-id-oos.csv`` and ``-ood-oos.csv`` hold
the in-scope, in-domain and out-of-domain out-of-scope rows apart (CLINC150's out-of-scope queries
count as out of domain: no intent of any of its domains covers them).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _find_data() -> Path:
    """``shared/`` sits beside the repository root (a clone) or higher up (a git worktree)."""
    if "WOT_AGENTS_ROUTING_DATA" in os.environ:
        return Path(os.environ["WOT_AGENTS_ROUTING_DATA"])
    for parent in ROOT.parents:
        if (parent / "shared" / "data" / "routing").is_dir():
            return parent / "shared" / "data" / "routing"
    return ROOT.parent / "shared" / "data" / "routing"


DATA = _find_data()
SEED = 0
SHOTS = 10

#: CLINC150's ten domains (the dataset's domains.json, not shipped in data_full.json).
CLINC_DOMAINS: dict[str, list[str]] = {
    "banking": "transfer transactions balance freeze_account pay_bill bill_balance bill_due interest_rate routing min_payment order_checks pin_change report_fraud account_blocked spending_history".split(),  # noqa: E501
    "credit_cards": "credit_score report_lost_card credit_limit rewards_balance new_card application_status card_declined international_fees apr redeem_rewards credit_limit_change damaged_card replacement_card_duration improve_credit_score expiration_date".split(),  # noqa: E501
    "kitchen_and_dining": "recipe restaurant_reviews calories nutrition_info restaurant_suggestion ingredients_list ingredient_substitution cook_time food_last meal_suggestion restaurant_reservation confirm_reservation how_busy cancel_reservation accept_reservations".split(),  # noqa: E501
    "home": "shopping_list shopping_list_update next_song play_music update_playlist todo_list todo_list_update calendar calendar_update what_song order order_status reminder reminder_update smart_home".split(),  # noqa: E501
    "auto_and_commute": "traffic directions gas gas_type distance current_location mpg oil_change_when oil_change_how jump_start uber schedule_maintenance last_maintenance tire_pressure tire_change".split(),  # noqa: E501
    "travel": "book_flight book_hotel car_rental travel_suggestion travel_alert travel_notification carry_on timezone vaccines translate flight_status international_visa lost_luggage plug_type exchange_rate".split(),  # noqa: E501
    "utility": "time alarm share_location find_phone weather text spelling make_call timer date calculator measurement_conversion flip_coin roll_dice definition".split(),  # noqa: E501
    "work": "direct_deposit pto_request taxes payday w2 pto_balance pto_request_status next_holiday insurance insurance_change schedule_meeting pto_used meeting_schedule rollover_401k income".split(),  # noqa: E501
    "small_talk": "greeting goodbye tell_joke where_are_you_from how_old_are_you what_is_your_name who_made_you thank_you what_can_i_ask_you what_are_your_hobbies do_you_have_pets are_you_a_bot meaning_of_life who_do_you_work_for fun_fact".split(),  # noqa: E501
    "meta": "change_ai_name change_user_name cancel user_name reset_settings whisper_mode repeat no yes maybe change_language change_accent change_volume change_speed sync_device".split(),  # noqa: E501
}

Row = tuple[str, str | None]

#: The agent of an in-domain out-of-scope row until it is written (then empty, like any other).
ID_OOS = "(in-domain out-of-scope)"


def humanise(label: str) -> str:
    """``pay_bill`` and ``AddToPlaylist`` as words: "pay bill", "add to playlist"."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label)
    return spaced.replace("_", " ").replace("-", " ").lower()


def agent(agent_id: str, title: str, description: str, capabilities: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@context": ["https://www.w3.org/2022/wot/td/v1.1", {"lmos": "https://eclipse.dev/lmos/protocol/v1"}],
        "@type": "lmos:Agent",
        "id": agent_id,
        "title": title,
        "description": description,
        "lmos:capabilities": capabilities,
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
    }


def capability(intent: str, examples: list[str], description: str | None = None) -> dict[str, Any]:
    return {
        "id": f"urn:bench:capability:{intent}",
        "name": humanise(intent),
        "description": description or humanise(intent),
        "examples": examples,
    }


def intent_agent(intent: str, examples: list[str]) -> dict[str, Any]:
    return agent(
        f"urn:bench:agent:{intent}", humanise(intent), humanise(intent), [capability(intent, examples)]
    )


def few_shot(by_intent: dict[str, list[str]], rng: random.Random) -> dict[str, list[str]]:
    return {intent: rng.sample(texts, SHOTS) for intent, texts in sorted(by_intent.items())}


def lmos() -> tuple[list[dict[str, Any]], list[Row], list[Row]]:
    folder = DATA / "lmos-benchmark"
    specs = json.loads((folder / "agentRoutingSpecs.json").read_text())
    train = list(csv.DictReader(open(folder / "train.csv", newline="")))
    examples: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in train:
        examples[row["agent"], row["intent"]].append(row["instruction"])
    agents = []
    for spec in specs:
        described = {c["name"]: c.get("description") for c in spec["capabilities"]}
        intents = list(described) + sorted(
            {i for a, i in examples if a == spec["name"] and i not in described}
        )
        capabilities = [capability(i, examples.get((spec["name"], i), []), described.get(i)) for i in intents]
        agents.append(agent(spec["name"], humanise(spec["name"]), spec["description"], capabilities))
    test = [
        (row["instruction"], row["agent"]) for row in csv.DictReader(open(folder / "test.csv", newline=""))
    ]
    rng = random.Random(SEED)
    val = [
        (row["instruction"], row["agent"]) for row in rng.sample(train, 500)
    ]  # seen rows: a smoke check only
    return agents, val, test


def clinc() -> dict[str, tuple[list[dict[str, Any]], list[Row], list[Row]]]:
    data = json.loads((DATA / "clinc150" / "data_full.json").read_text())
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in data["train"]:
        by_intent[intent].append(text)
    seeds = few_shot(by_intent, random.Random(SEED))
    domain_of = {intent: domain for domain, intents in CLINC_DOMAINS.items() for intent in intents}
    assert set(domain_of) == set(seeds), "the CLINC domain table does not cover the intents"
    intents = [intent_agent(intent, examples) for intent, examples in seeds.items()]
    domains = [
        agent(
            f"urn:bench:agent:{domain}",
            humanise(domain),
            f"{humanise(domain)} assistant",
            [capability(intent, seeds[intent]) for intent in members],
        )
        for domain, members in CLINC_DOMAINS.items()
    ]

    def rows(split: str, by: str) -> list[Row]:
        return [(t, f"urn:bench:agent:{i if by == 'intent' else domain_of[i]}") for t, i in data[split]]

    out_of_scope = {split: [(t, None) for t, _ in data[f"oos_{split}"]] for split in ("val", "test")}
    return {
        "clinc-intent": (intents, rows("val", "intent"), rows("test", "intent")),
        "clinc-domain": (domains, rows("val", "domain"), rows("test", "domain")),
        "clinc-oos": (
            intents,
            rows("val", "intent") + out_of_scope["val"],
            rows("test", "intent") + out_of_scope["test"],
        ),
    }


def clinc_negatives() -> list[Row]:
    """CLINC150's out-of-scope train queries: examples of what no agent takes (``--out-of-scope``)."""
    data = json.loads((DATA / "clinc150" / "data_full.json").read_text())
    return [(text, None) for text, _ in data["oos_train"]]


def write_rows(path: Path, rows: list[Row]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "agent"])
        writer.writerows((text, expected or "") for text, expected in rows)


def banking77() -> tuple[list[dict[str, Any]], list[Row], list[Row]]:
    folder = DATA / "banking77"
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in csv.DictReader(open(folder / "train.csv", newline="")):
        by_intent[row["category"]].append(row["text"])
    rng = random.Random(SEED)
    seeds = few_shot(by_intent, rng)
    val = []
    for intent, texts in sorted(by_intent.items()):
        rest = [t for t in texts if t not in seeds[intent]]
        val.extend((t, f"urn:bench:agent:{intent}") for t in rng.sample(rest, min(20, len(rest))))
    test = [
        (r["text"], f"urn:bench:agent:{r['category']}")
        for r in csv.DictReader(open(folder / "test.csv", newline=""))
    ]
    return [intent_agent(intent, examples) for intent, examples in seeds.items()], val, test


def _seq(folder: Path) -> list[tuple[str, str]]:
    """A ``seq.in`` / ``label`` folder (jianguoz/Few-Shot-Intent-Detection) as (text, label) rows."""
    texts = (folder / "seq.in").read_text(encoding="utf-8").splitlines()
    labels = (folder / "label").read_text(encoding="utf-8").splitlines()
    return [(text.strip(), label.strip()) for text, label in zip(texts, labels, strict=True) if text.strip()]


def _intent_set(folder: Path, rng: random.Random) -> tuple[list[dict[str, Any]], list[Row], list[Row]]:
    """Intent agents seeded from ``train``; val/test from ``valid``/``test`` plus, where the folder
    has them, its in-domain (``id-oos``) and out-of-domain (``ood-oos``) out-of-scope queries."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, label in _seq(folder / "train"):
        by_intent[label].append(text)
    seeds = few_shot(by_intent, rng)

    def rows(split: str) -> list[Row]:
        found: list[Row] = [(t, f"urn:bench:agent:{label}") for t, label in _seq(folder / split)]
        if (folder / "id-oos" / split).is_dir():
            found += [(t, ID_OOS) for t, _ in _seq(folder / "id-oos" / split)]
        if (folder / "ood-oos" / split).is_dir():
            found += [(t, None) for t, _ in _seq(folder / "ood-oos" / split)]
        return found

    agents = [intent_agent(intent, examples) for intent, examples in seeds.items()]
    return agents, rows("valid"), rows("test")


def snips() -> tuple[list[dict[str, Any]], list[Row], list[Row]]:
    return _intent_set(DATA / "snips", random.Random(SEED))


def banking77_oos() -> tuple[list[dict[str, Any]], list[Row], list[Row]]:
    return _intent_set(DATA / "banking77-oos", random.Random(SEED))


def clinc_single_domain(domain: str) -> tuple[list[dict[str, Any]], list[Row], list[Row]]:
    return _intent_set(DATA / "clinc-single-domain-oos" / domain, random.Random(SEED))


def zero_shot(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agents without their example utterances: only names and descriptions are left."""
    return [
        {
            **a,
            "lmos:capabilities": [
                {k: v for k, v in c.items() if k != "examples"} for c in a["lmos:capabilities"]
            ],
        }
        for a in agents
    ]


def scale_agents(count: int = 1000) -> tuple[list[dict[str, Any]], list[str]]:
    """``count`` agents of one capability with 10 CLINC train utterances each (intents repeat past
    150 with other samples), and the first 300 CLINC test queries: the 1k-agent latency workload."""
    data = json.loads((DATA / "clinc150" / "data_full.json").read_text())
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in data["train"]:
        by_intent[intent].append(text)
    intents = sorted(by_intent)
    rng = random.Random(SEED)
    agents = []
    for number in range(count):
        intent = intents[number % len(intents)]
        agents.append(
            agent(
                f"urn:bench:agent:{number}",
                f"{humanise(intent)} {number}",
                humanise(intent),
                [capability(f"{intent}-{number}", rng.sample(by_intent[intent], 10))],
            )
        )
    return agents, [text for text, _ in data["test"][:300]]


def datasets() -> dict[str, tuple[list[dict[str, Any]], list[Row], list[Row]]]:
    """Every dataset as (agents, val rows, test rows); empty when the data folder is absent."""
    if not DATA.is_dir():
        return {}
    found = {"lmos": lmos(), **clinc(), "banking77": banking77()}
    if (DATA / "snips").is_dir():
        found["snips"] = snips()
    if (DATA / "banking77-oos").is_dir():
        found["banking77-oos"] = banking77_oos()
    for domain in ("banking", "credit_cards"):
        if (DATA / "clinc-single-domain-oos" / domain).is_dir():
            found[f"clinc-{domain.replace('_', '-')}"] = clinc_single_domain(domain)
    for name, (agents, val, test) in list(found.items()):
        found[f"{name}-zs"] = (zero_shot(agents), val, test)
    return found


def write(out: Path) -> dict[str, dict[str, Path]]:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Path]] = {}
    for name, (agents, val, test) in datasets().items():
        paths = {
            "agents": out / f"{name}-agents.json",
            "val": out / f"{name}-val.csv",
            "test": out / f"{name}-test.csv",
        }
        paths["agents"].write_text(json.dumps(agents, indent=1))
        for split, rows in (("val", val), ("test", test)):
            write_rows(paths[split], [(text, None if a == ID_OOS else a) for text, a in rows])
            parts = {
                "in": [row for row in rows if row[1] not in (None, ID_OOS)],
                "id-oos": [(text, None) for text, a in rows if a == ID_OOS],
                "ood-oos": [row for row in rows if row[1] is None],
            }
            for part, chosen in parts.items():
                if chosen:
                    paths[f"{split}-{part}"] = out / f"{name}-{split}-{part}.csv"
                    write_rows(paths[f"{split}-{part}"], chosen)
        if name in ("clinc-oos", "clinc-oos-zs"):
            paths["negatives"] = out / f"{name}-negatives.csv"
            write_rows(paths["negatives"], clinc_negatives())
        files[name] = paths
    return files


def missing() -> bool:
    """True (after saying so) when the routing datasets are not on this machine: benches skip."""
    if DATA.is_dir():
        return False
    print(f"skipped: no routing data at {DATA}")
    return True


def machine() -> str:
    """The machine line every routing bench prints first: figures depend on cores and load."""
    cpu = platform.processor() or platform.machine()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "wot-agents-routing"
    )
    args = parser.parse_args()
    if missing():
        return 0
    for name, paths in write(args.out).items():
        print(f"{name:<13} " + "  ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
