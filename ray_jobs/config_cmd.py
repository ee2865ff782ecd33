"""`tandem config`: show the documented defaults, or a resolved config and its hash."""

from __future__ import annotations

COMMAND = "config"
HELP = "show the default job config (every knob, commented) or resolve a config file"


def add_arguments(p) -> None:
    p.add_argument("action", choices=["show", "resolve"], help="show: commented defaults; resolve: merged config + hash")
    p.add_argument("--config", help="job config YAML to resolve")


def run(args) -> int:
    import yaml
    from pipelines.core.config import config_hash, default_config_text, load_config
    if args.action == "show":
        print(default_config_text())
        return 0
    cfg = load_config(args.config)
    print(yaml.safe_dump(cfg, sort_keys=False))
    print(f"# config_hash: {config_hash(cfg)}")
    return 0
