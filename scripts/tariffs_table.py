"""The bundled Tarif Bleu table as the Markdown that docs/tariffs.md shows between its
`<!-- table:start -->` and `<!-- table:end -->` markers (tests/test_tariffs.py compares them).

    .venv/bin/python -m scripts.tariffs_table            # print it
    .venv/bin/python -m scripts.tariffs_table --write    # replace it in docs/tariffs.md
"""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

from collector.tariffs.regulated import KVA_STEPS, OPTIONS, Option, Subscription, Table, bundled

DOC = Path(__file__).resolve().parent.parent / "docs" / "tariffs.md"
START, END = "<!-- table:start -->\n", "<!-- table:end -->\n"
NAMES: dict[Option, str] = {"base": "Base", "hphc": "HP/HC", "tempo": "Tempo"}
HEADS: dict[Option, list[str]] = {
    "base": ["BASE"],
    "hphc": ["HP", "HC"],
    "tempo": [f"{c} {h}" for c in ("blue", "white", "red") for h in ("HP", "HC")],
}
REPORTED = " **reported, to verify**"


def _powers(kvas: list[int]) -> str:
    first = KVA_STEPS.index(kvas[0])
    contiguous = len(kvas) > 2 and list(KVA_STEPS[first : first + len(kvas)]) == kvas
    return f"{kvas[0]}-{kvas[-1]}" if contiguous else ", ".join(map(str, kvas))


def _subscription(sub: Subscription | None) -> str:
    if sub is None:
        return "–"
    return f"{sub.per_year}" if sub.per_year is not None else f"{sub.per_month} m"


def markdown(table: Table) -> str:
    lines: list[str] = []
    for option in OPTIONS:
        heads = HEADS[option]
        lines += [f"#### {NAMES[option]}, €/kWh incl. tax", ""]
        lines += ["| from | kVA | " + " | ".join(heads) + " | source |"]
        lines += ["|---|---|" + "---|" * len(heads) + "---|"]
        groups: dict[tuple[date, tuple[Decimal, ...], str, bool], list[int]] = {}
        for entry in table.prices:
            if entry.option == option:
                key = (entry.since, tuple(entry.prices.values()), entry.source.key, entry.reported)
                groups.setdefault(key, []).append(entry.kva)
        for (since, prices, source, reported), kvas in groups.items():
            figures = " | ".join(map(str, prices))
            flag = REPORTED if reported else ""
            lines.append(f"| {since} | {_powers(kvas)} | {figures} | `{source}`{flag} |")
        lines.append("")
    lines += [
        "#### Subscriptions incl. tax",
        "",
        "€/year where the source gives a year (the CRE file), `m`: €/month where it gives a "
        "month (EDF's grid).",
        "",
        "| option | from | " + " | ".join(f"{k} kVA" for k in KVA_STEPS) + " | source |",
        "|---|---|" + "---|" * len(KVA_STEPS) + "---|",
    ]
    rows: dict[tuple[Option, date], dict[int, Subscription]] = {}
    for sub in table.subscriptions:
        rows.setdefault((sub.option, sub.since), {})[sub.kva] = sub
    for (option, since), subs in rows.items():
        cells = " | ".join(_subscription(subs.get(kva)) for kva in KVA_STEPS)
        sources = ", ".join(sorted({f"`{s.source.key}`" for s in subs.values()}))
        flag = REPORTED if any(s.reported for s in subs.values()) else ""
        lines.append(f"| {NAMES[option]} | {since} | {cells} | {sources}{flag} |")
    lines += ["", "#### Sources", "", "| key | document | checked |", "|---|---|---|"]
    for name, cited in table.sources.items():
        lines.append(f"| `{name}` | {cited.ref} <{cited.url}> | {cited.checked} |")
    return "\n".join(lines) + "\n"


def replace(doc: str, table: str) -> str:
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}{table}{END}{tail}"


def main(argv: list[str]) -> int:
    table = markdown(bundled())
    if argv == ["--write"]:
        DOC.write_text(replace(DOC.read_text(encoding="utf-8"), table), encoding="utf-8")
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
