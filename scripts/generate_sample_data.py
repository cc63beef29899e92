"""Write the sample Planhat companies, custom fields and Slack channels as JSON files.

Usage: python scripts/generate_sample_data.py --out sample/ --today 2026-12-04
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopback.sample_data import DEFAULT_SEED, generate_sample, write_sample  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder to write the files to.")
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=date.today(),
        help="Date (YYYY-MM-DD) that renewal and activity dates are relative to.",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Random seed.")
    parser.add_argument(
        "--companies", type=int, default=2000, help="Number of companies to generate."
    )
    args = parser.parse_args(argv)

    sample = generate_sample(seed=args.seed, today=args.today, company_count=args.companies)
    for path in write_sample(sample, args.out):
        print(f"Wrote {path}")
    print(
        f"{len(sample.companies)} companies, {len(sample.custom_fields)} custom fields, "
        f"{len(sample.channels)} channels, dates relative to {sample.today.isoformat()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
