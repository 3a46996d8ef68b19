"""Everything a run leaves behind: the JSON (checked against the schema), a
markdown table, a PNG chart and the table printed in the terminal."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from rich.table import Table

SCHEMA_PATH = Path(__file__).with_name("benchmark-result.schema.json")


def validate(doc: dict) -> None:
    """Raise ``jsonschema.ValidationError`` if ``doc`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def load(path: str | Path) -> dict:
    doc = json.loads(Path(path).read_text())
    validate(doc)
    return doc


# ---- rows shared by the terminal and markdown tables ---------------------

COLUMNS = ("system", "test", "tok/s", "± std", "roofline", "J/token", "tok/J", "avg W",
           "launches/step", "runs")


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def rows(doc: dict) -> list[list[str]]:
    """One row per measured result."""
    return [[r["system"], r["test"], _num(r["tok_s_median"], ",.1f"), _num(r["tok_s_std"], ",.1f"),
             _num(r.get("roofline_fraction"), ".1%"), _num(r.get("joules_per_token"), ".4g"),
             _num(r.get("tok_per_joule"), ",.1f"), _num(r.get("avg_power_w"), ".0f"),
             _num(r.get("kernel_launches_per_step"), "g"), str(r["runs"])]
            for r in doc["results"] if not r.get("skipped")]


def skipped_notes(doc: dict) -> list[str]:
    """'system (tests): reason' for every peer that did not run, one line per
    system and reason."""
    skipped: dict[tuple[str, str], list[str]] = {}
    for r in doc["results"]:
        if r.get("skipped"):
            skipped.setdefault((r["system"], r["skipped"]), []).append(r["test"])
    return [f"{system} ({', '.join(tests)}): {reason}" for (system, reason), tests in skipped.items()]


def headline(doc: dict) -> list[str]:
    gpu, c, sw, m = doc["gpu"], doc["ceilings"], doc["software"], doc["model"]
    matmul = f"{c['bf16_matmul_tflops']:.1f} TFLOP/s {c.get('matmul_dtype', 'bfloat16')} matmul"
    power = "–" if gpu["power_limit_w"] is None else f"{gpu['power_limit_w']:.0f} W"
    weights = " (random weights)" if m.get("random_weights") else ""
    reads = c.get("read_bandwidth_each_gbs", [])
    each = f" (the better of {' and '.join(f'{r:.0f}' for r in reads)})" if len(reads) > 1 else ""
    return [
        f"{gpu['name']}, power limit {power}, driver {gpu.get('driver', '?')}; "
        f"measured ceilings: {c['read_bandwidth_gbs']:.0f} GB/s read{each}, {matmul}",
        f"model {m['name']}{weights}, {m['params'] / 1e9:.3g} B params, "
        f"{m['bytes_per_decode_step'] / 1e9:.3g} GB per decode step",
        f"megadelta {sw['megadelta_commit']}, torch {sw.get('torch', '?')}, "
        f"CUDA {sw.get('cuda', '?')}, NVRTC {sw.get('nvrtc') or '?'}, {doc['created']}",
    ]


def markdown_table(headers: list[str] | tuple[str, ...], cells: list[list[str]], left: int) -> list[str]:
    """A markdown table's lines: the first ``left`` columns aligned left, the rest right."""
    return ["| " + " | ".join(headers) + " |",
            "|" + "|".join(["---"] * left + ["---:"] * (len(headers) - left)) + "|",
            *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in cells)]


def markdown(doc: dict) -> str:
    lines = [f"{line}  " for line in headline(doc)] + [""]
    lines += markdown_table(COLUMNS, rows(doc), left=2)
    lines += [""] + [f"- not run: {note}" for note in skipped_notes(doc)]
    lines += ["", "roofline: decode = bytes per step x tok/s / read bandwidth; prefill = "
                  "FLOPs per token x tok/s / matmul rate (both ceilings measured in this run)."]
    return "\n".join(lines) + "\n"


def rich_table(doc: dict) -> Table:
    notes = [f"not run: {note}" for note in skipped_notes(doc)]
    table = Table(title="megadelta bench", caption="\n".join(headline(doc) + notes),
                  caption_justify="left")
    for i, name in enumerate(COLUMNS):
        table.add_column(name, justify="left" if i < 2 else "right")
    for row in rows(doc):
        table.add_row(*row)
    return table


# ---- the index of saved results ------------------------------------------

MEGAKERNEL = "megadelta-megakernel"

# (header, system, test, field, format); the field "tok_s" is the median ± std.
INDEX_COLUMNS = (
    ("megakernel tg128 tok/s", MEGAKERNEL, "tg128", "tok_s", ",.1f"),
    ("tg128 roofline", MEGAKERNEL, "tg128", "roofline_fraction", ".1%"),
    ("tg128 J/token", MEGAKERNEL, "tg128", "joules_per_token", ".3f"),
    ("megakernel pp520 tok/s", MEGAKERNEL, "pp520", "tok_s", ",.1f"),
    ("megakernel tg128@4096 tok/s", MEGAKERNEL, "tg128@4096", "tok_s", ",.1f"),
    ("megakernel tg128@32768 tok/s", MEGAKERNEL, "tg128@32768", "tok_s", ",.1f"),
    ("transformers-eager tg128 tok/s", "hf-transformers-eager", "tg128", "tok_s", ",.1f"),
    ("llama.cpp tg128 tok/s", "llama.cpp", "tg128", "tok_s", ",.1f"),
)


def _result_cell(doc: dict, system: str, test: str, field: str, fmt: str) -> str:
    """One measured value of ``doc``, or '–' where the result is absent or skipped."""
    r = next((r for r in doc["results"] if (r["system"], r["test"]) == (system, test)
              and not r.get("skipped")), None)
    if r is None:
        return "–"
    if field == "tok_s":
        return f"{_num(r['tok_s_median'], fmt)} ± {_num(r['tok_s_std'], fmt)}"
    return _num(r.get(field), fmt)


def _created(doc: dict) -> datetime:
    return datetime.fromisoformat(doc["created"]).astimezone(timezone.utc)


def results_index(paths: Iterable[str | Path]) -> str:
    """A markdown index of saved result files, one row per file, newest first.

    It lives as INDEX.md beside the JSON files it lists (the links are file
    names), so the history of a GPU's results can be read at a glance: when
    each run was made, from which commit, the measured read bandwidth and the
    headline numbers of the megakernel and its peers. Regenerate it with
    ``megadelta bench --results-index DIR`` after adding a result."""
    docs = sorted(((Path(p), load(p)) for p in paths),
                  key=lambda item: (_created(item[1]), item[0].name), reverse=True)
    gpus = ", ".join(dict.fromkeys(doc["gpu"]["name"] for _, doc in docs))
    headers = ["file", "created (UTC)", "commit", "NVRTC", "read GB/s"]
    headers += [header for header, *_ in INDEX_COLUMNS]
    table = [[f"[{path.name}]({path.name})", _created(doc).strftime("%Y-%m-%d %H:%M"),
              doc["software"]["megadelta_commit"][:7], doc["software"].get("nvrtc") or "–",
              _num(doc["ceilings"]["read_bandwidth_gbs"], ".0f"),
              *(_result_cell(doc, *spec) for _, *spec in INDEX_COLUMNS)]
             for path, doc in docs]
    lines = [f"# {gpus}: {len(docs)} saved results, newest first "
             "(generated by `megadelta bench --results-index`)", "",
             *markdown_table(headers, table, left=4)]
    return "\n".join(lines) + "\n"


# ---- the chart -------------------------------------------------------------

def write_chart(doc: dict, path: Path) -> None:
    """Grouped bars: tok/s (left) and tok/J (right) per test and system,
    log-scaled because prefill and decode differ by orders of magnitude."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    measured = [r for r in doc["results"] if not r.get("skipped")]
    tests = list(dict.fromkeys(r["test"] for r in measured))
    systems = list(dict.fromkeys(r["system"] for r in measured))
    by_key = {(r["system"], r["test"]): r for r in measured}
    fig = Figure(figsize=(max(8, 1.6 * len(tests) * 2), 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / max(len(systems), 1)
    for ax, field, label in ((axes[0], "tok_s_median", "tokens / s"),
                             (axes[1], "tok_per_joule", "tokens / joule")):
        drawn = False
        for i, system in enumerate(systems):
            xs, ys = [], []
            for j, test in enumerate(tests):
                value = by_key.get((system, test), {}).get(field)
                if value:
                    xs.append(j + (i - (len(systems) - 1) / 2) * width)
                    ys.append(value)
            if ys:
                bars = ax.bar(xs, ys, width, label=system)
                ax.bar_label(bars, fmt="%.3g", fontsize="x-small")
                drawn = True
        ax.set_xticks(range(len(tests)), tests)
        ax.set_ylabel(label)
        if drawn:
            ax.set_yscale("log")
            ax.legend(fontsize="small")
        else:
            reason = doc.get("energy", {}).get("skipped") or "no data"
            ax.text(0.5, 0.5, f"not measured:\n{reason}", ha="center", va="center",
                    transform=ax.transAxes, wrap=True)
    fig.suptitle(f"{doc['model']['name']} on {doc['gpu']['name']}")
    fig.savefig(path, dpi=110)


# ---- files -----------------------------------------------------------------

def write_all(doc: dict, output_dir: Path, slug: str) -> tuple[Path, Path, Path]:
    """Validate, then write <output>/<slug>/<timestamp>.{json,md,png}."""
    validate(doc)
    stamp = datetime.fromisoformat(doc["created"]).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(output_dir) / slug
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md_path = json_path.with_suffix(".md")
    md_path.write_text(markdown(doc))
    png_path = json_path.with_suffix(".png")
    write_chart(doc, png_path)
    return json_path, md_path, png_path
