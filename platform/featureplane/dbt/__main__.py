"""``python -m featureplane.dbt [--config featureplane.yaml] [--force]``: make the dbt project's manifest
current (``make setup`` runs it, so the first plan or code-location load does not wait for dbt parse)."""

from __future__ import annotations

import argparse
import sys

from featureplane.config import ConfigError, load_config
from featureplane.dbt.project import DbtError, dbt_project, prepare_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m featureplane.dbt", description=__doc__)
    parser.add_argument("--config", help="featureplane.yaml (default: found as the CLI finds it)")
    parser.add_argument("--force", action="store_true", help="parse even if no file changed")
    args = parser.parse_args(argv)
    try:
        project = dbt_project(load_config(args.config))
        if project is None:
            print("featureplane.yaml has no dbt: section; nothing to prepare")
            return 0
        path = prepare_manifest(project, force=args.force)
    except (ConfigError, DbtError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"dbt manifest is current: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
