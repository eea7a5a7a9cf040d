"""YAML + SQLite demo: flows defined in conf/, rows saved to and loaded from SQLite.

``CalcAndSave`` verifies scores, averages them and saves the averages to an SQLite file
through the built-in ``sqlite`` connector (no Save FaaS). ``LoadAndSummarise`` loads
them back (no Load FaaS) and prints a summary. The database is made fresh on each run.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import kisflow as kf

HERE = Path(__file__).resolve().parent


def main() -> kf.RunResult:
    """Register the FaaS, load conf/, run both flows; return the summary run."""
    db = HERE / "conf" / "data" / "scores.db"
    db.unlink(missing_ok=True)
    runpy.run_path(str(HERE / "faas.py"))
    flows = kf.load_config_dir(HERE / "conf").flows
    rows = [json.loads(line) for line in (HERE / "input.jsonl").read_text().splitlines()]

    saved = flows["CalcAndSave"].run(rows)
    kept = saved.stage("VerifyScores")
    print(
        f"CalcAndSave: {kept.rows_in} rows in, {kept.rows_out} verified, "
        f"{len(saved.output)} averages saved to {db.relative_to(HERE)}"
    )

    summary = flows["LoadAndSummarise"].run()
    print(
        f"LoadAndSummarise: {summary.stage('LoadAverages').rows_out} rows loaded, "
        f"ended {summary.ended.value}"
    )
    return summary


if __name__ == "__main__":
    main()
