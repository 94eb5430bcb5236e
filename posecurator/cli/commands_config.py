"""CLI command `config`: print a command's default config, one comment per option (registered by cli.main)."""

from __future__ import annotations

from pathlib import Path


def register(sub, add_parser, commands: dict) -> None:
    s = add_parser(sub, "config", "Print the default config of a command (YAML, a comment per option), to edit and pass "
                                  "back with --config.",
                   "  posecurator config train > train.yaml      # edit, then: posecurator train DATA -o RUN --config train.yaml\n"
                   "  posecurator config add -o add.yaml\n"
                   "  posecurator config difficulty\n"
                   "flags given on the command line override the keys of a --config file\n")
    s.add_argument("name", choices=["train", "add", "difficulty"], help="whose options")
    s.add_argument("-o", "--output", help="write to this file instead of printing")
    commands["config"] = cmd_config


def cmd_config(args):
    from posecurator.cli.configs import default_config_text

    text = default_config_text(args.name)
    if args.output:
        from posecurator.train.checkpoint import _atomic

        _atomic(Path(args.output), lambda tmp: Path(tmp).write_text(text))
        print(f"wrote the default {args.name} config -> {args.output}")
    else:
        print(text, end="")
