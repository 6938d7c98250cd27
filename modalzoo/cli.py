"""The `modalzoo` command line. User errors print one line and exit 2; no tracebacks for them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import ModalzooError

EXAMPLES = {
    "list": "modalzoo list            # every kind\n  modalzoo list encoder    # one kind",
    "recipes": "modalzoo recipes",
    "train": "modalzoo train bert_mlm_tiny run_dir=runs/tiny trainer.max_steps=200 trainer.lr=5e-4\n"
             "  modalzoo train my_recipe.yaml --import my_components   # your own recipe and components",
    "eval": "modalzoo eval runs/tiny",
    "generate": "modalzoo generate runs/gpt_tiny --prompt 'Return the number of' --max-new-tokens 24",
    "data build": "modalzoo data build text-sample --out data/text-sample",
    "export": "modalzoo export runs/clip_tiny --format hf --out exports/clip_tiny [--push me/clip-tiny --private]",
    "embed": "modalzoo embed runs/clap_tiny --stream audio clips/*.flac --out embeddings.safetensors\n"
             "  modalzoo embed runs/clip_tiny --stream text --text 'a photo of a 3.' --out text.safetensors",
    "checkpoint consolidate": "modalzoo checkpoint consolidate runs/base --out runs/base/consolidated",
}


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="modalzoo", formatter_class=fmt,
                                     description="Pretrain foundation models in any modality from one set of parts.",
                                     epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, parent=sub) -> argparse.ArgumentParser:
        return parent.add_parser(name.split()[-1], help=help_, description=help_, formatter_class=fmt,
                                 epilog=f"example:\n  {EXAMPLES[name]}")

    p = command("list", "List registered components (all kinds, or one kind).")
    p.add_argument("kind", nargs="?", help="embedding, encoder, decoder, target, tokenizer, dataset, ...")
    command("recipes", "List the recipes shipped with modalzoo.")
    p = command("train", "Train a recipe; key=value overrides change any recipe key (run_dir=... picks the "
                         "output folder).")
    p.add_argument("recipe", help="a shipped recipe name (see `modalzoo recipes`) or a recipe .yaml path")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import your module first so its registered components can be named")
    p = command("eval", "Evaluate a run's newest checkpoint on the validation split; writes RUN_DIR/eval.json "
                "(data.KEY=VALUE overrides: evaluate on another packed dataset or split, written to "
                "eval-<overrides>.json, e.g. eval-path-other.json).")
    p.add_argument("run_dir", type=Path)
    p.add_argument("overrides", nargs="*", metavar="data.key=value",
                   help="data overrides (data.path=data/other) and report options (eval.code_search.pairs=500)")
    p.add_argument("--out", type=Path, default=None, help="where to write the results (default: see above)")
    p.add_argument("--batches", type=int, default=50, help="batches per split to evaluate on (default 50)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import your module first (runs that use your own components)")

    p = command("generate", "Continue a prompt with a run's causal LM (greedy; --temperature > 0 samples); an "
                            "encoder-decoder run (T5) answers it, filling its sentinels.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate at most (default 32)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; > 0: sample")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: keep this much probability mass")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--device", default="cpu")
    p.add_argument("--step", type=int, help="which checkpoint (default: the newest complete one)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")

    p = command("export", "Export a run for others: --format hf writes a folder transformers loads natively "
                          "(BertForMaskedLM, RobertaForMaskedLM, ElectraForPreTraining/ForMaskedLM, GPT2LMHeadModel, "
                          "LlamaForCausalLM, T5ForConditionalGeneration, ViTModel, ViTMAEForPreTraining, CLIPModel), "
                          "verified against the zoo model; --format modalzoo works for any run "
                          "(modalzoo.from_pretrained). Both write the tokenizer/image processor files and a "
                          "model card.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", choices=["hf", "modalzoo"], default="hf")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--target", help="export only this target and the streams it reads (a binding run's "
                                    "image-text target as CLIPModel); in a mixture, with its source's data files")
    p.add_argument("--arch", help="transformers architecture (default: the one matching the model); "
                                  "'vit' exports one image stream's encoder as ViTModel, 'ast' one audio stream "
                                  "as ASTModel, 'bert_encoder'/'roberta_encoder' one BERT-shaped text stream "
                                  "(e.g. a CLAP's text tower) as BertModel/RobertaModel, 'electra_generator' "
                                  "an ELECTRA run's generator as ElectraForMaskedLM")
    p.add_argument("--stream", help="with a one-stream --arch (vit, ast, bert_encoder, roberta_encoder): the "
                                    "stream to export")
    p.add_argument("--step", type=int, help="which checkpoint (default: the newest complete one)")
    p.add_argument("--push", metavar="REPO_ID", help="upload to the Hugging Face Hub (token: HF_TOKEN or login)")
    p.add_argument("--private", action="store_true", help="with --push: create the repo private")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")

    p = command("embed", "Embed files (images, audio, .txt) and --text strings with one stream of a run or a "
                         "modalzoo export: a contrastive target's normalised projection, or (with none) the mean "
                         "of the stream's encoder output. Writes safetensors: 'embeddings' [N, E], one row per "
                         "input (FILES first, then each --text), and the inputs in its metadata.")
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a run directory or a --format modalzoo export")
    p.add_argument("files", nargs="*", type=Path, metavar="FILES", help="files, read as the run read its shards")
    p.add_argument("--stream", required=True, help="the stream to embed with (image, audio, text, ...)")
    p.add_argument("--text", action="append", default=[], metavar="TEXT", help="a text to embed (repeatable)")
    p.add_argument("--target", help="the contrastive target whose projection to use, where several project the "
                                    "stream into different spaces")
    p.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")

    ckpt_parser = sub.add_parser("checkpoint", help="Work with a run's checkpoints.",
                                 description="Work with a run's checkpoints.", formatter_class=fmt,
                                 epilog="example:\n  " + EXAMPLES["checkpoint consolidate"])
    ckpt_sub = ckpt_parser.add_subparsers(dest="checkpoint_command", required=True, metavar="SUBCOMMAND")
    p = command("checkpoint consolidate", "Turn a (sharded DCP) checkpoint into one model.safetensors.", ckpt_sub)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--step", type=int, help="which checkpoint (default: the newest complete one)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")

    from .model import import_components
    from .registry import PACKERS
    import_components()               # each modality registers its `data pack-*` packers
    packers = PACKERS.entries()
    data = sub.add_parser("data", help="Build the sample data sets or pack your own into shards.",
                          description="Build the sample data sets or pack your own into webdataset shards.",
                          formatter_class=fmt, epilog="examples:\n  " + "\n  ".join(
                              [EXAMPLES["data build"], *(e.cls.example for e in packers)]))
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = command("data build", "Build a sample data set offline from what is installed.", data_sub)
    p.add_argument("name", help="text-sample, digits, ... (see `modalzoo list sample_data`)")
    p.add_argument("--out", type=Path, help="output folder (default: $MODALZOO_DATA/NAME, i.e. data/NAME)")
    p.add_argument("options", nargs="*", metavar="key=value", help="builder options, e.g. max_mb=2")
    for entry in packers:
        _packer_parser(data_sub, entry, fmt)
    for add_parser, _ in _modality_commands().values():
        add_parser(sub)
    return parser


def _modality_commands() -> dict:
    """Commands a modality owns (``modalities/<m>/commands.py``: ``COMMANDS = {name: (add_parser, run)}``),
    e.g. audio's `modalzoo units`."""
    from .components import modality_modules
    return {name: entry for module in modality_modules("commands") for name, entry in module.COMMANDS.items()}


def _packer_parser(data_sub, entry, fmt) -> None:
    """``data NAME SOURCES... --out DIR`` plus one ``--flag`` per field of the packer's config."""
    import dataclasses
    import typing

    doc = " ".join((entry.cls.__doc__ or "").split())
    p = data_sub.add_parser(entry.name, help=doc, description=doc, formatter_class=fmt,
                            epilog=f"example:\n  {entry.cls.example}")
    p.add_argument("sources", nargs="+", type=Path, metavar=entry.cls.inputs)
    p.add_argument("--out", type=Path, required=True)
    import yaml

    hints = typing.get_type_hints(entry.config)
    for f in dataclasses.fields(entry.config):
        if f.name in ("sources", "out"):
            raise ValueError(f"packer '{entry.name}': its config field '{f.name}' would shadow the command's own")
        hint, choices = hints[f.name], None
        if typing.get_origin(hint) is typing.Literal:
            choices = list(typing.get_args(hint))
            hint = type(choices[0])
        # int / float / str parse as themselves; anything else (bool, lists, optionals) as a YAML value, so
        # that `--flag false` is False; the registry then validates the whole config as for any component.
        parse = hint if hint in (int, float, str) else yaml.safe_load
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        p.add_argument("--" + f.name.replace("_", "-"), type=parse, choices=choices, default=default,
                       help=f.metadata.get("help"))


def _parse_options(items: list[str]) -> dict:
    import yaml
    options = {}
    for item in items:
        if "=" not in item:
            raise ModalzooError(f"option '{item}' is not key=value")
        key, value = item.split("=", 1)
        options[key] = yaml.safe_load(value)
    return options


def _import_plugins(modules: list[str]) -> None:
    import importlib
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise ModalzooError(f"--import {module}: {err}") from None


def run(argv: list[str]) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "embed" and not any(e.startswith("-") for e in extra):
        args.files += map(Path, extra)    # files after an option: embed RUN --stream audio A.wav B.wav --out ...
    elif extra:                       # overrides may come after options: train RECIPE --import m a=1
        if args.command != "train" or any(("=" not in e and not e.startswith("~")) or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    import modalzoo
    _import_plugins(getattr(args, "imports", []))
    if args.command == "list":
        components = modalzoo.list_components(args.kind)
        from .registry import registry_for
        kinds = [args.kind] if args.kind else list(components)
        for kind in kinds:
            print(f"{kind}:")
            entries = registry_for(kind).entries()
            width = max((len(e.summary) for e in entries), default=0)
            for entry in entries:
                print(f"  {entry.name:<16} {entry.summary:<{width}}  {entry.module}")
    elif args.command == "recipes":
        for name in modalzoo.list_recipes():
            print(name)
    elif args.command == "train":
        cfg = modalzoo.load_recipe(args.recipe, args.overrides)
        run_dir = modalzoo.train(cfg)
        if os.environ.get("RANK", "0") == "0":
            print(f"run finished: {run_dir}")
    elif args.command in (owned := _modality_commands()):
        return owned[args.command][1](args) or 0
    elif args.command == "eval":
        from .evaluation.run import evaluate_run
        from .model import import_components
        import_components()
        evaluate_run(args.run_dir, batches=args.batches, device=args.device, data_overrides=args.overrides,
                     out=args.out)
    elif args.command == "generate":
        from .components import modality_modules
        text = modality_modules("generate")[0]          # prompts are text: the text modality's generate.py
        print(text.generate_from_run(args.run_dir, args.prompt, max_new_tokens=args.max_new_tokens,
                                     temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                                     device=args.device, step=args.step))
    elif args.command == "export":
        from .hub.export import export_run
        if args.private and not args.push:
            raise ModalzooError("--private only applies with --push REPO_ID")
        export_run(args.run_dir, args.out, format=args.format, arch=args.arch, stream=args.stream, step=args.step,
                   push=args.push, private=args.private, overwrite=args.overwrite, target=args.target)
    elif args.command == "embed":
        from .embed import Text, embed_to_file
        print(embed_to_file(args.run_dir, args.stream, [*args.files, *map(Text, args.text)], args.out,
                            target=args.target, batch_size=args.batch_size, device=args.device))
    elif args.command == "checkpoint":
        from .training.runs import consolidate_run
        path = consolidate_run(args.run_dir, args.out, args.step)
        print(f"wrote {path}")
    elif args.command == "data":
        if args.data_command == "build":
            from .model import import_components
            from .registry import SAMPLE_DATA
            import_components()
            builder = SAMPLE_DATA.build({"name": args.name, **_parse_options(args.options)}, "data build")
            out = args.out or Path(os.environ.get("MODALZOO_DATA", "data")) / args.name
            info = builder.build(out)
            summary = (info.get("summary") or info.get("documents") or info.get("images") or info.get("clips")
                       or info)
            print(f"built {args.name} in {out}: {summary}")
        else:
            import dataclasses

            from .registry import PACKERS
            entry = PACKERS.get(args.data_command)
            options = {f.name: getattr(args, f.name) for f in dataclasses.fields(entry.config)}
            packer = PACKERS.build({"name": args.data_command, **options}, f"data {args.data_command}")
            print(packer.pack(args.sources, args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except ModalzooError as err:
        print(f"modalzoo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modalzoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
