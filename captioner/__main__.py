"""Command line: `python -m captioner predict|serve|export` use a trained model.

predict captions image files, serve runs the caption service and its page, export writes a
TensorFlow SavedModel. All three decode as a published model's card says (the folder `dvc artifacts
get` writes), or else with the evaluate params of the project in the current folder, unless flags
say otherwise.
"""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from captioner.core import params
from captioner.core.errors import PipelineError
from captioner.core.paths import BEST_MODEL, PARAMS_FILE
from captioner.inference.limits import ServiceLimits
from captioner.inference.model_card import CARD_JSON, decoding_of, read_card

if TYPE_CHECKING:
    from captioner.inference.captioning import ImageCaptioner

DECODING_FLAGS = (("--beam-size", int, "1 is greedy"),
                  ("--length-penalty", float, "0 ranks by total log-probability"),
                  ("--max-length", int, "most words"))


def decoding_settings(arguments: argparse.Namespace) -> tuple[params.DecodingSettings, int]:
    """The decoding settings of a published model's card (those its scores were measured with),
    or else the evaluate params of the project in the current folder, overridden by the given
    flags; with the batch size of those params.

    Without a card or a params.yaml here, all three decoding flags must be given.
    """
    flags = {"beam_size": arguments.beam_size, "length_penalty": arguments.length_penalty,
             "max_length": arguments.max_length}
    given = {key: value for key, value in flags.items() if value is not None}
    card = read_card(arguments.model)
    evaluate = params.load(params.EvaluateParams) if PARAMS_FILE.is_file() else None
    batch_size = evaluate.batch_size if evaluate else params.DECODE_BATCH_SIZE
    if card is not None:
        settings = decoding_of(card, arguments.model.parent / CARD_JSON)
    elif evaluate is not None:
        settings = evaluate.decoding
    elif len(given) == len(flags):
        settings = params.DecodingSettings(**given)
    else:
        raise PipelineError(f"{PARAMS_FILE}: not found in this folder; run in the project "
                            "folder (it decodes as the evaluate stage does), give a published "
                            "model (its card says how it decodes) or give --beam-size, "
                            "--length-penalty and --max-length")
    return dataclasses.replace(settings, **given), batch_size


def new_folder(out: Path) -> None:
    """Creates export's --out folder before anything is loaded; PipelineError naming the problem
    when it exists (a dangling link included) or cannot be created."""
    if os.path.lexists(out):
        what = f"a symbolic link to {os.readlink(out)}" if out.is_symlink() else \
            "a folder" if out.is_dir() else "a file"
        raise PipelineError(f"--out {out}: already exists ({what}); give a new folder")
    parent = out.absolute().parent
    if not parent.is_dir():
        problem = "does not exist" if not parent.exists() else "is not a folder"
        raise PipelineError(f"--out {out}: its folder {parent} {problem}")
    try:
        out.mkdir()
    except OSError as error:
        raise PipelineError(f"--out {out}: cannot create it: {error.strerror}") from None


def serve(captioner: ImageCaptioner, arguments: argparse.Namespace) -> None:
    """Runs the caption service until Ctrl+C."""
    import uvicorn

    from captioner.inference.connections import reserve_descriptors
    from captioner.inference.service import return_freed_images, server_config
    limits = ServiceLimits(
        max_upload_bytes=int(arguments.max_upload_mb * 1024 * 1024), max_queue=arguments.queue,
        batch_window_s=arguments.batch_window_ms / 1000, decoders=arguments.decoders,
        client_timeout_s=arguments.client_timeout, max_connections=arguments.max_connections)
    reserve_descriptors(limits.max_connections)
    return_freed_images()
    config = server_config(captioner, limits, arguments.host, arguments.port,
                           arguments.allowed_host)
    print(f"serving {arguments.model} at http://{arguments.host}:{arguments.port}/ (Ctrl+C stops)",
          flush=True)
    uvicorn.Server(config).run()


def model_file(model: Path) -> Path:
    """The model a --model names: the file, or the model.keras a folder holds (such as models/)."""
    return model / BEST_MODEL.name if model.is_dir() else model


def run(arguments: argparse.Namespace) -> int:
    """Runs the chosen command; returns its exit code."""
    arguments.model = model_file(arguments.model)
    settings, batch_size = decoding_settings(arguments)
    if arguments.command == "export":
        new_folder(arguments.out)
    if arguments.command == "predict":
        from captioner.inference.predict import predict
        return predict(arguments.images, arguments.model, settings, batch_size, arguments.json,
                       arguments.attention_maps)
    if arguments.command == "serve":
        from captioner.inference.captioning import ImageCaptioner
        serve(ImageCaptioner(arguments.model, settings, batch_size), arguments)
        return 0
    try:
        from captioner.inference.captioning import ImageCaptioner
        from captioner.inference.export import export
        export(ImageCaptioner(arguments.model, settings, batch_size), arguments.out)
    except BaseException:
        shutil.rmtree(arguments.out, ignore_errors=True)
        raise
    print(f"{arguments.out}: SavedModel of {arguments.model}; its signature 'serving_default' "
          "takes encoded images and gives their captions")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    top = argparse.ArgumentParser(prog="python -m captioner", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="caption images with a trained model")
    predict.add_argument("images", nargs="+", help="image files or folders of images")
    predict.add_argument("--json", action="store_true", help="print a JSON list")
    predict.add_argument("--attention-maps", type=Path, metavar="DIR",
                         help="also draw where each word of each caption looked, one PNG per "
                              "image in DIR (a model with an attention decoder)")
    serve = commands.add_parser("serve", help="serve captions over HTTP, with a web page")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    serve.add_argument("--max-upload-mb", type=float,
                       default=ServiceLimits.max_upload_bytes / (1024 * 1024),
                       help="largest image upload; larger ones get 413 (default: %(default)s)")
    serve.add_argument("--queue", type=int, default=ServiceLimits.max_queue,
                       help="most images received and not yet answered (waiting to be decoded or "
                            "captioned); more get 503 (default: %(default)s)")
    serve.add_argument("--decoders", type=int, default=ServiceLimits().decoders,
                       help="uploads decoded at once, which bounds decoding's memory "
                            "(default: the core count, %(default)s)")
    serve.add_argument("--client-timeout", type=float, default=ServiceLimits.client_timeout_s,
                       metavar="SECONDS", help="time a client has to send a request's headers, "
                       "and again its body; idle connections close after it (default: %(default)s)")
    serve.add_argument("--max-connections", type=int, default=ServiceLimits.max_connections,
                       help="open connections; past it the longest idle one is closed "
                            "(default: %(default)s)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="another name the service answers to in the Host header (repeatable; "
                            "it answers to the --host address, and on a loopback or wildcard "
                            "address to localhost and 127.0.0.1)")
    serve.add_argument("--batch-window-ms", type=float, default=ServiceLimits.batch_window_s * 1000,
                       help="how long a batch may wait for requests on their way "
                            "(default: %(default)s)")
    export = commands.add_parser("export", help="write a TensorFlow SavedModel: image bytes in, "
                                 "captions out")
    export.add_argument("--out", type=Path, required=True, help="folder to write (must not exist)")
    for command in (predict, serve, export):
        command.add_argument("--model", type=Path, default=BEST_MODEL,
                             help="a model written by the train stage, or a folder holding "
                                  f"{BEST_MODEL.name} and {BEST_MODEL.with_suffix('.json').name} "
                                  "(published/, or one `dvc artifacts get` wrote) "
                                  "(default: %(default)s)")
        for flag, kind, meaning in DECODING_FLAGS:
            command.add_argument(flag, type=kind, help=f"{meaning} (default: the model card's, "
                                 f"else the evaluate params in {PARAMS_FILE})")
    return top


def main() -> None:
    command_line = parser()
    arguments = command_line.parse_args()
    if (arguments.beam_size is not None and arguments.beam_size < 1) or (
            arguments.max_length is not None and arguments.max_length < 1):
        command_line.error("--beam-size and --max-length must be at least 1")
    if arguments.length_penalty is not None and arguments.length_penalty < 0:
        command_line.error("--length-penalty must be at least 0")
    if arguments.command == "serve" and (
            min(arguments.max_upload_mb, arguments.queue, arguments.decoders,
                arguments.client_timeout, arguments.max_connections) <= 0
            or arguments.batch_window_ms < 0):
        command_line.error("--max-upload-mb, --queue, --decoders, --client-timeout and "
                           "--max-connections must be positive, --batch-window-ms at least 0")
    try:
        raise SystemExit(run(arguments))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
