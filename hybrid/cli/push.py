"""`hybrid push` and `hybrid push-space`: publish a trained folder or the Gradio Space; print REPO_ID@COMMIT."""

from __future__ import annotations

import argparse
import logging
import sys

from hybrid.constants import KINDS

logger = logging.getLogger("hybrid.cli")


def _publish(args: argparse.Namespace, push, **options) -> int:
    """Run one push; a Hub failure is one error line and exit status 1."""
    from hybrid.publish import HubError

    try:
        info = push(args.repo_id, private=args.private, **options)
    except HubError as error:
        logger.error("%s", error)
        return 1
    sys.stdout.write(f"{args.repo_id}@{info.oid}\n")
    return 0


def push_command(args: argparse.Namespace) -> int:
    from hybrid.publish import push_model

    def push(repo_id: str, **options):
        return push_model(args.kind, args.folder, repo_id, **options)

    return _publish(args, push, revision=args.revision, commit_message=args.commit_message)


def push_space_command(args: argparse.Namespace) -> int:
    from hybrid.publish import push_space

    return _publish(args, push_space, classifier=args.classifier, detector=args.detector)


def add_commands(commands) -> None:
    push = commands.add_parser(
        "push",
        help="push a trained model folder to the Hub in one commit (token: $HF_TOKEN "
        "or `hf auth login`); prints REPO_ID@COMMIT. Sends only the weights, config.json, README.md, metrics.json, "
        "split.json, recipe.yaml, TensorBoard logs and the card's images, with local paths made relative; any other "
        "file in the folder, or the token in a file, refuses the push",
    )
    push.add_argument("kind", choices=list(KINDS), help="what the folder holds: " + " | ".join(KINDS))
    push.add_argument(
        "folder", help="a trained model folder (the output of train/classifier.py or train/detector.py; only read)"
    )
    push.add_argument("repo_id", help="the Hub repo to push to, e.g. me/gesture-classifier (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    push.add_argument("--revision", default=None, help="branch to push to (created if missing; default: main)")
    push.add_argument("--commit-message", default=None, help="default: 'Upload KIND (N files)'")
    push.set_defaults(func=push_command)

    space = commands.add_parser(
        "push-space",
        help="push the Gradio Space (app.py, hybrid/, requirements.txt, README.md) "
        "with both models pinned to their current commit in hybrid_space.json",
    )
    space.add_argument("repo_id", help="the Space to push to, e.g. me/hybrid-gestures (created if missing)")
    space.add_argument("--classifier", required=True, help="classifier Hub id[@revision], pinned to its commit now")
    space.add_argument("--detector", required=True, help="detector Hub id[@revision], pinned to its commit now")
    space.add_argument("--private", action="store_true", help="create the Space private")
    space.set_defaults(func=push_space_command)
