"""Builds bench/results/calibrate.{md,json,png} from `tq perplexity --kld` logs of uniform
schemes and `tq calibrate` plans (logs and plans under the directory given as argv[1])."""
import json
import re
import sys
from pathlib import Path

BYTES_PER_SIDE = {2: 18, 2.5: 22, 3: 26, 3.5: 30, 4: 34, 4.5: 38, 5: 42}  # d = 64, codes + norm


def parse_log(path: Path) -> dict[str, float]:
    text = path.read_text()
    m = re.search(r"PPL = ([\d.]+).*?KLD mean ([\d.]+).*?p99 ([\d.]+).*?top-1 agree ([\d.]+)%",
                  text, re.S)
    if not m:
        return {}
    return {"ppl": float(m[1]), "kld": float(m[2]), "kld_p99": float(m[3]),
            "top1": float(m[4]) / 100}


def main() -> None:
    d = Path(sys.argv[1])
    out = Path("bench/results")
    rows: list[dict] = []
    uniform = {"tq3": 3.25, "tq3.5": 3.75, "tq4": 4.25, "k4v3": 3.75}
    for name, bits in uniform.items():
        r = parse_log(d / f"ev_{name}_window_0.txt")
        if r:
            rows.append({"scheme": f"{name}:window=0", "kind": "uniform", "bits": bits, **r})
    for plan in sorted(d.glob("plan*.json")):
        budget = plan.stem[4:]
        r = parse_log(d / f"ev_plan__work_tmp_cal_plan{budget}.json_window_0.txt")
        if not r:
            continue
        p = json.loads(plan.read_text())
        bytes_tok = sum(BYTES_PER_SIDE[b["k"]] + BYTES_PER_SIDE[b["v"]] for b in p["bits"])
        rows.append({"scheme": f"plan (budget {budget})", "kind": "plan",
                     "bits": 8 * bytes_tok / (2 * 30 * 64), "budget": float(budget),
                     "predicted_kld": p["predicted_kld"],
                     "widths": [[b["k"], b["v"]] for b in p["bits"]], **r})
    rows.sort(key=lambda r: (r["bits"], r["kind"]))
    (out / "calibrate.json").write_text(json.dumps(rows, indent=2) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind, marker in (("uniform", "o"), ("plan", "s")):
            pts = sorted((r["bits"], r["kld"]) for r in rows if r["kind"] == kind)
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker=marker, label=kind)
        for r in rows:
            if r["scheme"].startswith("k4v3"):
                ax.annotate("k4v3", (r["bits"], r["kld"]))
        ax.set_xlabel("stored bits / value (codes + norms)")
        ax.set_ylabel("mean KLD vs fp16 (nats)")
        ax.set_yscale("log")
        ax.set_title("SmolLM2-135M, WikiText-2 12x1024, window=0")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "calibrate.png", dpi=120)
    except ImportError:
        pass
    print(json.dumps([{k: v for k, v in r.items() if k != "widths"} for r in rows], indent=1))


if __name__ == "__main__":
    main()
