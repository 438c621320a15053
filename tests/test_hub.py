"""Push and pull both models and the Space against a Hub on 127.0.0.1 (olah + tests/hubserver.py).

huggingface_hub reads HF_ENDPOINT / HF_TOKEN / HF_HUB_OFFLINE when it is imported, so every client call runs
in a subprocess with its own environment and HF_HOME (`hub.client_env`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
import yaml

from tests.hubserver import HubServer, validate_metadata

REPO = Path(__file__).resolve().parent.parent
ORG = "hybrid-org"

# Loads everything once in a fresh interpreter and prints one JSON line of predictions.
PULL = r"""
import json, sys
import numpy as np, torch
args = json.loads(sys.argv[1])
from hybrid.classifier import GestureClassifier
from hybrid.detector import HandDetector
from hybrid.images import load_image

images = [load_image(p) for p in args["images"]]
out = {}

def classify(clf):
    return clf.probabilities(images).round(5).tolist()

def detect(det):
    return [[[round(v, 2) for v in d.box] + [round(d.score, 4), d.label] for d in per] for per in det.predict(images)]

if args["local"]:
    local_clf = GestureClassifier.from_pretrained(args["local_classifier"], device="cpu", precision="fp32")
    out["labels"] = local_clf.label_names
    out["local_classifier"] = classify(local_clf)
    out["local_detector"] = detect(HandDetector.from_pretrained(args["local_detector"]))
out["hub_classifier"] = classify(GestureClassifier.from_pretrained(
    args["classifier"], revision=args["classifier_revision"], device="cpu", precision="fp32"))
out["hub_detector"] = detect(HandDetector.from_pretrained(args["detector"], revision=args["detector_revision"]))

import timm
model = timm.create_model("hf-hub:" + args["classifier"], pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
with torch.no_grad():
    logits = model(torch.stack([transform(im) for im in images]))
out["timm"] = logits.softmax(-1).numpy().round(5).tolist()

if args["transformers"]:
    from transformers import pipeline
    classifier = pipeline("image-classification", model=args["classifier"], device="cpu")
    results = classifier(images, top_k=model.num_classes)
    out["transformers"] = [{r["label"]: round(r["score"], 5) for r in per} for per in results]

if args.get("space"):
    from huggingface_hub import snapshot_download
    from hybrid.hub import default_model
    root = snapshot_download(args["space"], repo_type="space")
    pins = {kind: default_model(kind, root=root) for kind in ("classifier", "detector")}
    out["space_pins"] = pins
    if not args["pipeline"]:  # the pipeline below loads the pinned models anyway
        pinned = GestureClassifier.from_pretrained(pins["classifier"], device="cpu", precision="fp32")
        out["space_classifier"] = classify(pinned)
        out["space_detector"] = detect(HandDetector.from_pretrained(pins["detector"]))
    else:
        from hybrid.pipeline import HybridPipeline
        def hands(pipe):
            return [[h.to_dict() for h in per] for per in pipe(images)]
        pipe = HybridPipeline.from_pretrained(detector=pins["detector"], classifier=pins["classifier"])
        out["hub_pipeline"] = hands(pipe)
        out["local_pipeline"] = hands(HybridPipeline.from_pretrained(detector=args["local_detector"],
                                                                     classifier=args["local_classifier"]))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub") as server:
        yield server


def run(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return result


def hybrid_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return run(env, "-m", "hybrid.cli", *args)


def pushed(result: subprocess.CompletedProcess) -> tuple[str, str]:
    """'org/name@sha' printed by `hybrid push` -> (repo, sha)."""
    assert result.returncode == 0, result.stderr
    repo, sha = result.stdout.strip().splitlines()[-1].split("@")
    assert len(sha) == 40
    return repo, sha


def digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def repo_files(hub: HubServer, repo_type: str, repo_id: str, revision: str = "main") -> list[str]:
    out = hub.store.git(hub.store.path(repo_type, repo_id), "ls-tree", "-r", "--name-only", revision).stdout
    return out.decode().split()


def repo_file(hub: HubServer, repo_type: str, repo_id: str, path: str, revision: str = "main") -> str:
    return hub.store.git(hub.store.path(repo_type, repo_id), "show", f"{revision}:{path}").stdout.decode()


def token_leaks(token: str, roots: list[Path], texts: list[str]) -> list[str]:
    """Every file under `roots` (git objects decompressed) and every text that contains the token."""
    needle = token.encode()
    leaks = [f"output #{i}" for i, text in enumerate(texts) if token in text]
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if "objects" in path.parts and ".git" in path.parts and "lfs" not in path.parts:
                try:
                    data = zlib.decompress(data)
                except zlib.error:
                    pass
            if needle in data:
                leaks.append(str(path))
    return leaks


def images(data_root: Path, n: int = 3) -> list[str]:
    folder = data_root / "roboflow-hand-gesture-recognition-v6" / "test" / "images"
    return [str(p) for p in sorted(folder.glob("*.jpg"))[:n]]


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


# Runs code blocks in order, each in a fresh namespace, in one interpreter; a failing block stops the run.
RUN_BLOCKS = r"""
import json, sys
for number, block in enumerate(json.loads(sys.argv[1])):
    exec(compile(block, f"<block {number}>", "exec"), {"__name__": "__main__"})
    print(f"BLOCK {number} OK", flush=True)
"""


def run_blocks(env: dict, cwd: Path, blocks: list[str]) -> subprocess.CompletedProcess:
    """Run `blocks` as written (RUN_BLOCKS) from `cwd`; assert every one of them finished."""
    env = {**env, "HYBRID_CACHE": str(cwd / ".hybrid-cache"), "YOLO_OFFLINE": "1"}
    command = [sys.executable, "-c", RUN_BLOCKS, json.dumps(blocks)]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"BLOCK {len(blocks) - 1} OK" in done.stdout
    return done


def snippet_folder(folder: Path, data_root: Path) -> Path:
    """A working folder holding the files the usage snippets name: photo.jpg and hand_crop.jpg (real photos)."""
    folder.mkdir(parents=True)
    photo = images(data_root, 1)[0]  # a 224x224 Roboflow close-up: a whole photo and a hand crop at once
    for name in ("photo.jpg", "hand_crop.jpg"):
        shutil.copy(photo, folder / name)
    return folder


def pull(env: dict, args: dict) -> tuple[dict, str]:
    env = {k: v for k, v in env.items() if k not in ("HYBRID_CLASSIFIER", "HYBRID_DETECTOR")}  # use the Space pins
    result = run(env, "-c", PULL, json.dumps(args))
    assert result.returncode == 0, result.stderr[-4000:]
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :]), result.stdout + result.stderr


def assert_same_predictions(out: dict, local: dict) -> None:
    """Hub-loaded models (every loader that ran) predict what the local folders predict."""
    assert out["hub_classifier"] == local["local_classifier"]
    assert out["hub_detector"] == local["local_detector"]
    for per_timm, per_local in zip(out["timm"], local["local_classifier"], strict=True):
        assert per_timm == pytest.approx(per_local, abs=1e-4)
    if "transformers" in out:
        for per_tf, per_local in zip(out["transformers"], local["local_classifier"], strict=True):
            assert per_tf == pytest.approx(dict(zip(local["labels"], per_local)), abs=1e-4)
    if "space_classifier" in out:
        assert out["space_classifier"] == local["local_classifier"]
        assert out["space_detector"] == local["local_detector"]
    if "hub_pipeline" in out:
        assert out["hub_pipeline"] == out["local_pipeline"]


def test_round_trip_push_pull_space_offline(hub, trained_classifier, trained_detector, data_root, tmp_path):
    home = tmp_path / "hf-home"
    env = hub.client_env(home)
    before = {"classifier": digest(trained_classifier), "detector": digest(trained_detector)}
    outputs = []

    result = hybrid_cli(env, "push", "classifier", str(trained_classifier), f"{ORG}/gesture-classifier")
    outputs.append(result.stdout + result.stderr)
    classifier, classifier_sha = pushed(result)
    result = hybrid_cli(
        env,
        "push",
        "detector",
        str(trained_detector),
        f"{ORG}/hand-detector",
        "--revision",
        "v1",
        "--commit-message",
        "detector v1",
    )
    outputs.append(result.stdout + result.stderr)
    detector, detector_sha = pushed(result)
    result = hybrid_cli(env, "push-space", f"{ORG}/hybrid", "--classifier", classifier, "--detector", f"{detector}@v1")
    outputs.append(result.stdout + result.stderr)
    space, space_sha = pushed(result)

    # the folders were only read
    assert digest(trained_classifier) == before["classifier"]
    assert digest(trained_detector) == before["detector"]

    # model repos: one commit each on top of the repo's initial commit, with card, metrics and TensorBoard events
    for repo, revision, folder, required in (
        (classifier, "main", trained_classifier, ["model.safetensors", "config.json"]),
        (detector, "v1", trained_detector, ["model.safetensors", "config.json", "best.pt"]),
    ):
        files = repo_files(hub, "model", repo, revision)
        assert set(required + ["README.md", "metrics.json"]) <= set(files), files
        assert any("tfevents" in f for f in files), files
        assert sum(1 for p in folder.rglob("*tfevents*")) >= 1
        log = hub.store.git(hub.store.path("model", repo), "rev-list", revision).stdout.split()
        assert len(log) == 2  # initial commit + our single push commit
        card = repo_file(hub, "model", repo, "README.md", revision)
        assert card.split("\n---\n")[0] == (folder / "README.md").read_text().split("\n---\n")[0]  # metadata
        assert str(folder) not in card  # the usage snippets name the repo, not the local folder
        pointer = repo_file(hub, "model", repo, "model.safetensors", revision)
        assert pointer.startswith("version https://git-lfs.github.com/spec/v1")  # weights went through LFS
    assert repo_files(hub, "model", detector, "main") == [".gitattributes"]  # --revision left main alone
    assert hub.store.resolve("model", detector, "v1") == detector_sha

    # the Space: code, requirements, a valid Gradio config, models pinned to the commits just pushed
    files = repo_files(hub, "space", space)
    assert {
        "app.py",
        "requirements.txt",
        "README.md",
        "hybrid_space.json",
        "hybrid/__init__.py",
        "hybrid/hub.py",
    } <= set(files)
    readme = repo_file(hub, "space", space, "README.md")
    front = yaml.safe_load(readme.split("---")[1])
    gradio_pin = [
        ln.split("==")[1] for ln in (REPO / "requirements.txt").read_text().splitlines() if ln.startswith("gradio==")
    ]
    assert front["sdk"] == "gradio"
    assert front["sdk_version"] == gradio_pin[0]
    assert front["app_file"] == "app.py"
    assert front["models"] == [classifier, detector]
    assert front["license"] == "agpl-3.0"
    assert front["python_version"]
    assert 0 < len(front["short_description"]) <= 60
    assert validate_metadata(readme, "space") == ([], [])
    pins = json.loads(repo_file(hub, "space", space, "hybrid_space.json"))
    assert pins == {"classifier": f"{classifier}@{classifier_sha}", "detector": f"{detector}@{detector_sha}"}

    # pull with every loader: same predictions as the local folders
    args = {
        "classifier": classifier,
        "classifier_revision": classifier_sha,
        "detector": detector,
        "detector_revision": "v1",
        "local_classifier": str(trained_classifier),
        "local_detector": str(trained_detector),
        "images": images(data_root),
        "space": space,
        "pipeline": True,
        "local": True,
        "transformers": True,
    }
    online, output = pull(env, args)
    outputs.append(output)
    assert online["space_pins"] == pins
    # the tiny detector stores conf=0.01 so that it returns boxes: the comparisons below are not vacuous
    assert any(online["local_detector"])
    assert any(online["hub_pipeline"])
    assert_same_predictions(online, online)

    # servers gone: our loaders and timm load from the Hub cache (transformers was checked online)
    hub.stop()
    offline, output = pull(
        hub.client_env(home, HF_HUB_OFFLINE="1"), {**args, "space": None, "local": False, "transformers": False}
    )
    outputs.append(output)
    assert_same_predictions(offline, online)

    # the token is in no pushed file, no server file or log, no cache file, no output
    assert token_leaks(hub.token, [hub.root, home], outputs) == []


PLACEHOLDERS = ("<this repo>", "<org>", "<repo>", "path/to/this/folder")


def test_pushed_cards_name_their_repo_in_every_snippet_and_the_snippets_run(
    hub, trained_classifier, trained_detector, data_root, tmp_path
):
    env = hub.client_env(tmp_path / "hf-home")
    for folder in (trained_classifier, trained_detector):  # before a push: the snippets load the folder
        local = (folder / "README.md").read_text()
        assert all(str(folder) in block for block in python_blocks(local)), local
        assert not [p for p in PLACEHOLDERS if p in local]
    classifier, _ = pushed(hybrid_cli(env, "push", "classifier", str(trained_classifier), f"{ORG}/gesture-classifier"))
    detector, _ = pushed(
        hybrid_cli(env, "push", "detector", str(trained_detector), f"{ORG}/hand-detector", "--revision", "v1")
    )
    blocks = []
    for repo, revision in ((classifier, "main"), (detector, "v1")):
        card = repo_file(hub, "model", repo, "README.md", revision)
        assert [p for p in PLACEHOLDERS if p in card] == []
        assert str(tmp_path.parent) not in card  # no local path left
        card_blocks = python_blocks(card)
        assert len(card_blocks) == (1 if repo == classifier else 2)
        for block in card_blocks:
            assert repo in block, block
            assert revision == "main" or f"@{revision}" in block or f'revision="{revision}"' in block, block
        blocks += card_blocks
    # the snippets run as shown, against the test Hub; the local cards' snippets against the folders
    local_blocks = [
        b for f in (trained_classifier, trained_detector) for b in python_blocks((f / "README.md").read_text())
    ]
    run_blocks(env, snippet_folder(tmp_path / "work", data_root), blocks + local_blocks)


def test_card_for_repo_rewrites_the_usage_section_or_an_older_cards_placeholders(tmp_path):
    from hybrid.publish import card_for_repo, usage_section

    (tmp_path / "config.json").write_text(json.dumps({"image_size": 64}))
    usage = usage_section("detector", folder="/models/detector", image_size=64)
    (tmp_path / "README.md").write_text(f"---\nlicense: mit\n---\nbefore\n{usage}\nafter\n")
    card = card_for_repo("detector", tmp_path, "org/det", "v1")
    assert card.startswith("---\nlicense: mit\n---\nbefore\n")
    assert card.endswith("\nafter\n")
    assert "/models/detector" not in card
    assert 'HandDetector.from_pretrained("org/det@v1")' in card
    assert 'hf_hub_download("org/det", "best.pt", revision="v1")' in card
    assert 'model.predict("photo.jpg", imgsz=64)' in card
    assert "org/det@" not in card_for_repo("detector", tmp_path, "org/det", "main")  # the default branch
    # a card rendered before the usage markers existed: its placeholders are replaced
    (tmp_path / "README.md").write_text('model = timm.create_model("hf-hub:<this repo>")\n')
    assert card_for_repo("classifier", tmp_path, "org/clf") == 'model = timm.create_model("hf-hub:org/clf")\n'


def test_push_to_existing_repo_adds_a_commit(hub, trained_classifier, tmp_path):
    home = tmp_path / "hf-home"
    first = pushed(hybrid_cli(hub.client_env(home), "push", "classifier", str(trained_classifier), f"{ORG}/clf"))
    # second push: the saved login instead of HF_TOKEN, from a copy whose metrics changed
    login = run(
        hub.client_env(home, token=None),
        "-c",
        f"from huggingface_hub import login; login(token={hub.token!r}, add_to_git_credential=False)",
    )
    assert login.returncode == 0, login.stderr
    folder = tmp_path / "classifier-v2"
    shutil.copytree(trained_classifier, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["note"] = "second push"
    (folder / "metrics.json").write_text(json.dumps(metrics))
    result = hybrid_cli(
        hub.client_env(home, token=None),
        "push",
        "classifier",
        str(folder),
        f"{ORG}/clf",
        "--commit-message",
        "retrained",
    )
    repo, second = pushed(result)
    commits = hub.store.git(hub.store.path("model", repo), "rev-list", "main").stdout.decode().split()
    assert commits[:2] == [second, first[1]]
    assert len(commits) == 3
    assert json.loads(repo_file(hub, "model", repo, "metrics.json"))["note"] == "second push"
    message = hub.store.git(hub.store.path("model", repo), "log", "-1", "--format=%s", "main").stdout.decode().strip()
    assert message == "retrained"
    # unchanged files were not re-sent: the second commit only touched metrics.json
    changed = (
        hub.store.git(hub.store.path("model", repo), "diff", "--name-only", first[1], second).stdout.decode().split()
    )
    assert changed == ["metrics.json"]
    assert hub.token not in result.stdout + result.stderr
    # the saved login is the one place the token belongs (and shows the leak check can see it)
    leaks = token_leaks(hub.token, [home, hub.root], [result.stdout, result.stderr])
    assert sorted(leaks) == [str(home / "stored_tokens"), str(home / "token")]


def test_push_with_bad_or_no_token_fails_clearly_and_leaves_folder(hub, trained_detector, tmp_path):
    before = digest(trained_detector)
    bad = "hf_" + "x" * 34
    push = ("push", "detector", str(trained_detector), f"{ORG}/hand-detector")
    result = hybrid_cli(hub.client_env(tmp_path / "home-bad", token=bad), *push)
    assert result.returncode == 1
    assert "creating the repository" in result.stderr
    assert "401" in result.stderr
    assert "token was rejected" in result.stderr
    assert bad not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not hub.store.exists("model", f"{ORG}/hand-detector")

    result = hybrid_cli(hub.client_env(tmp_path / "home-none", token=None), *push)
    assert result.returncode == 1
    assert "no Hugging Face token" in result.stderr

    # --private: the repo exists for its owner, not for anonymous readers
    repo, _ = pushed(
        hybrid_cli(
            hub.client_env(tmp_path / "home-ok"),
            "push",
            "detector",
            str(trained_detector),
            f"{ORG}/private-detector",
            "--private",
        )
    )
    assert hub.store.meta("model", repo)["private"]
    anonymous = run(
        hub.client_env(tmp_path / "home-anon", token=None), "-c", f"from hybrid.hub import snapshot; snapshot({repo!r})"
    )
    assert anonymous.returncode == 1
    assert "FileNotFoundError" in anonymous.stderr
    assert "404" in anonymous.stderr

    # a namespace the token may not write to
    result = hybrid_cli(
        hub.client_env(tmp_path / "home-ok"), "push", "detector", str(trained_detector), "someone-else/hand-detector"
    )
    assert result.returncode == 1
    assert "403" in result.stderr
    assert "creating the repository" in result.stderr
    assert digest(trained_detector) == before


def _with_card(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    readme = dst / "README.md"
    readme.write_text(edit(readme.read_text()))
    return dst


def test_invalid_card_is_rejected_before_upload(hub, trained_classifier, tmp_path):
    env = hub.client_env(tmp_path / "home")

    def requests() -> list[str]:
        return hub.log_path.read_text().splitlines() if hub.log_path.exists() else []

    # broken locally: model-index results without metrics, a missing required key, YAML that does not parse
    cases = {
        "model-index": lambda text: text.replace("metrics:", "no_metrics:", 1),
        "license": lambda text: text.replace("\nlicense:", "\nlicence:", 1),
        "does not parse": lambda text: text.replace("---\n", "---\nlibrary_name: [unclosed\n", 1),
    }
    for i, (expected, edit) in enumerate(cases.items()):
        folder = _with_card(trained_classifier, tmp_path / f"case{i}", edit)
        result = hybrid_cli(env, "push", "classifier", str(folder), f"{ORG}/bad-card")
        assert result.returncode == 2, (expected, result.stderr)
        assert "README.md" in result.stderr, result.stderr
        assert expected in result.stderr, result.stderr
    assert requests() == []  # nothing reached the Hub

    # fine locally, rejected by the Hub's validate-yaml: still before the repo is created
    folder = _with_card(
        trained_classifier,
        tmp_path / "hub-rejects",
        lambda text: re.sub(r"^license: .*$", "license: beerware", text, count=1, flags=re.M),
    )
    result = hybrid_cli(env, "push", "classifier", str(folder), f"{ORG}/bad-card")
    assert result.returncode == 2
    assert "validating the model card metadata" in result.stderr
    assert "license" in result.stderr
    assert [line.split('"')[1] for line in requests()] == ["POST /api/validate-yaml HTTP/1.1"]
    assert not hub.store.exists("model", f"{ORG}/bad-card")


def test_push_checks_the_folder_has_what_the_kind_needs(trained_classifier, tmp_path):
    from hybrid.publish import push_model

    with pytest.raises(ValueError, match="best.pt"):
        push_model("detector", trained_classifier, f"{ORG}/x")  # a classifier folder has no best.pt
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        push_model("classifier", tmp_path / "missing", f"{ORG}/x")
    folder = tmp_path / "no-card"
    shutil.copytree(trained_classifier, folder)
    (folder / "README.md").unlink()
    with pytest.raises(ValueError, match="README.md"):
        push_model("classifier", folder, f"{ORG}/x")
    with pytest.raises(ValueError, match="kind"):
        push_model("segmenter", folder, f"{ORG}/x")


def test_snapshot_and_default_model_resolve_local_sources(tmp_path, monkeypatch):
    from hybrid.hub import default_model, snapshot, split_revision

    assert snapshot(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        snapshot(tmp_path / "missing" / "model")
    with pytest.raises(ValueError, match="revision given twice"):
        snapshot("org/name@v1", revision="v2")
    assert split_revision("org/name@abc") == ("org/name", "abc")
    monkeypatch.delenv("HYBRID_CLASSIFIER", raising=False)
    assert default_model("classifier", root=tmp_path) == str(tmp_path / "models" / "classifier")
    (tmp_path / "hybrid_space.json").write_text(json.dumps({"classifier": "org/c@" + "a" * 40}))
    assert default_model("classifier", root=tmp_path) == "org/c@" + "a" * 40
    with pytest.raises(ValueError, match="hybrid_space.json"):
        default_model("detector", root=tmp_path)
    monkeypatch.setenv("HYBRID_CLASSIFIER", "org/other@main")
    assert default_model("classifier", root=tmp_path) == "org/other@main"


def test_test_hub_answers_404_to_unknown_routes_and_validates_metadata(hub):
    for path in ("/api/models/hybrid-org/x/discussions", "/api/spaces/hybrid-org/x/runtime", "/api/nothing"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(hub.endpoint + path, timeout=10)
        assert error.value.code == 404
    good = (
        "---\nlicense: mit\nmodel-index:\n- name: m\n  results:\n  - task: {type: image-classification}\n"
        "    dataset: {name: d, type: d}\n    metrics:\n    - {type: accuracy, value: 0.9}\n---\n"
    )
    assert validate_metadata(good, "model") == ([], [])
    errors, _ = validate_metadata(good.replace("value: 0.9", "value: [0.9]"), "model")
    assert errors
    assert "metrics[0].value" in errors[0]
    assert validate_metadata("---\nsdk: gradio\n---\n", "space")[0]  # sdk_version missing
    assert validate_metadata("no front matter", "model") == ([], ["empty or missing yaml metadata in repo card"])


# --- issue 29, item 4: a push sends an allowlist, finds the token in any encoding, names no local path ---------

TINY_CARD = """---
library_name: timm
tags: [image-classification]
datasets: [hands]
license: mit
pipeline_tag: {pipeline_tag}
model-index:
- name: tiny
  results:
  - task: {{type: {pipeline_tag}}}
    dataset: {{name: hands, type: hands}}
    metrics:
    - {{type: accuracy, value: 0.5}}
---
# tiny {kind}
{extra}
"""

# Pushes each folder (JSON argv) in one interpreter; prints one RESULT line per folder: the commit or the error.
PUSH_EACH = r"""
import json, sys
from hybrid.publish import push_model
for kind, folder in json.loads(sys.argv[1]):
    try:
        info = push_model(kind, folder, "hybrid-org/" + folder.rsplit("/", 1)[-1])
        print("RESULT " + json.dumps({"folder": folder, "commit": info.oid}), flush=True)
    except Exception as error:
        print("RESULT " + json.dumps({"folder": folder, "error": type(error).__name__, "message": str(error)}))
"""


def tiny_folder(folder: Path, kind: str = "classifier", card_extra: str = "") -> Path:
    """A model folder push accepts, made without training: real safetensors weights, config, metrics, a card
    whose metadata the Hub takes, the recipe as the trainers save it (its `output` the folder's absolute path);
    a detector also gets a best.pt saved by torch."""
    import numpy as np
    import torch
    from safetensors.numpy import save_file

    from hybrid.training.recipe import ClassifierRecipe, DetectorRecipe, save_recipe

    folder.mkdir(parents=True)
    save_file({"head.weight": np.zeros((6, 8), np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet50", "num_classes": 6, "image_size": 32}))
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": 0.5}))
    tag = {"classifier": "image-classification", "detector": "object-detection"}[kind]
    (folder / "README.md").write_text(TINY_CARD.format(pipeline_tag=tag, kind=kind, extra=card_extra))
    recipe = (ClassifierRecipe if kind == "classifier" else DetectorRecipe)(output=str(folder.resolve()))
    save_recipe(recipe, folder)
    if kind == "detector":
        torch.save({"model": None, "train_args": {"imgsz": 64}}, folder / "best.pt")
    return folder


def push_each(hub: HubServer, home: Path, folders: list[tuple[str, Path]]) -> tuple[dict[str, dict], str]:
    """Push every (kind, folder) with push_model in one subprocess: {folder name: result}, and all output."""
    done = run(hub.client_env(home), "-c", PUSH_EACH, json.dumps([(kind, str(f)) for kind, f in folders]))
    assert done.returncode == 0, done.stderr[-4000:]
    results = [json.loads(line[len("RESULT ") :]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == len(folders), done.stdout + done.stderr
    return {Path(r["folder"]).name: r for r in results}, done.stdout + done.stderr


def hub_requests(hub: HubServer) -> list[str]:
    return hub.log_path.read_text().splitlines() if hub.log_path.exists() else []


def pushed_bytes(hub: HubServer, repo_id: str, path: str, revision: str = "main") -> bytes:
    """A pushed file's content as the Hub serves it (an LFS file's object, not its pointer)."""
    data = hub.store.git(hub.store.path("model", repo_id), "show", f"{revision}:{path}").stdout
    pointer = re.match(rb"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\n", data)
    return hub.store.lfs_object("model", repo_id, pointer.group(1).decode()).read_bytes() if pointer else data


def local_paths(*folders: Path) -> list[str]:
    """Absolute paths of this machine no pushed file may carry: the folders' parents, home, the checkout."""
    return sorted({str(f.resolve().parent) for f in folders} | {str(Path.home()), str(REPO), "/tmp/"})


def test_push_refuses_files_outside_the_allowlist_and_names_them(hub, tmp_path):
    folder = tiny_folder(tmp_path / "careless")
    strays = {
        "id_rsa": "-----BEGIN OPENSSH PRIVATE"
        + " KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        "credentials": "[default]\naws_access_key_id = AKIA"
        "IOSFODNN7EXAMPLE\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "env.txt": "DATABASE_URL=postgres://admin:hunter2@db/prod\n",
        ".env": "OPENAI_API_KEY=sk-test\n",
        "notes.txt": "my notes\n",
        "backup/optimizer.pt": "not a model of this folder\n",
        "runs/secrets.json": "{}\n",
    }
    for name, text in strays.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / f"{hub.token}.txt").write_text("a name that is a secret\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[remote]\n")
    (folder / "runs" / "plot.png").symlink_to(Path.home() / ".ssh" / "id_rsa")  # an allowed name, another file
    # what the project's own writers leave in a model folder besides the pushed files: skipped without a word
    (folder / "checkpoints" / "epoch_1").mkdir(parents=True)
    (folder / "checkpoints" / "epoch_1" / "optimizer.bin").write_bytes(b"\0" * 64)
    (folder / ".demo-recipe").write_text("epochs: 1\n")
    before = digest(folder)

    result = hybrid_cli(hub.client_env(tmp_path / "home"), "push", "classifier", str(folder), f"{ORG}/careless")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in strays:
        assert name in lines[0], lines[0]
    assert "remove" in lines[0] and "checkpoints" not in lines[0] and ".demo-recipe" not in lines[0]
    assert "***.txt" in lines[0] and hub.token not in result.stdout + result.stderr
    assert ".git (a hidden folder)" in lines[0] and "runs/plot.png (a symlink)" in lines[0]
    assert hub_requests(hub) == []  # nothing was sent, not even the repo creation
    assert digest(folder) == before

    # once they are gone the push goes through, and sends exactly the allowed files
    for name in [*strays, f"{hub.token}.txt", ".git/config", "runs/plot.png"]:
        (folder / name).unlink()
    (folder / ".git").rmdir()
    repo, _ = pushed(
        hybrid_cli(hub.client_env(tmp_path / "home"), "push", "classifier", str(folder), f"{ORG}/careless")
    )
    files = repo_files(hub, "model", repo)
    assert sorted(files) == [
        ".gitattributes",
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
        "recipe.yaml",
    ]


def test_push_refuses_a_card_image_that_is_not_an_image(hub, tmp_path):
    folder = tiny_folder(tmp_path / "card-links-key", card_extra="![key](id_rsa)\n")
    (folder / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE" + " KEY-----\n")
    results, output = push_each(hub, tmp_path / "home", [("classifier", folder)])
    assert results["card-links-key"]["error"] == "ValueError", results
    assert "id_rsa" in results["card-links-key"]["message"]
    assert hub_requests(hub) == []


def test_push_refuses_other_secrets_and_files_that_are_not_what_their_names_say(hub, tmp_path):
    """Probe of issue 29: another account's Hub token in metrics.json and a private key saved as
    runs/x/results.csv were pushed (only the push token was searched), and a text of keys named runs/plot.png
    passed the checks. Each is refused, naming the file and not the secret, before anything is sent."""
    import gzip

    other_token = "hf_" + "ZyXwVuTsRqPoNmLkJiHgFeDcBa98765432"
    key = b"-----BEGIN OPENSSH PRIVATE" + b" KEY-----\nb3BlbnNzaA\n"  # split: this file is pushed in a test
    aws = "AKIA" + "IOSFODNN7EXAMPLE"
    cases = {
        "other-hub-token": (
            "metrics.json",
            json.dumps({"note": f"old token {other_token}"}).encode(),
            "a Hugging Face token",
        ),
        "key-as-results": ("runs/x/results.csv", key, "a private key"),
        "gzipped-key": ("logs/results.csv", gzip.compress(key), "a private key, inside a gzip stream"),
        "keys-as-plot": ("runs/plot.png", aws.encode() + b"\n", "not a PNG image"),
    }
    folders = []
    for name, (relative, content, _) in cases.items():
        folder = tiny_folder(tmp_path / name)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content)
        folders.append(("classifier", folder))
    results, output = push_each(hub, tmp_path / "home", folders)
    for name, (relative, _, kind) in cases.items():
        assert results[name]["error"] == "ValueError", (name, results[name])
        assert kind in results[name]["message"], (name, results[name]["message"])
    assert other_token not in output and aws not in output
    assert hub_requests(hub) == []


def test_push_refuses_the_token_in_weights_metadata_and_in_any_common_encoding(hub, tmp_path):
    import base64
    import gzip
    import zipfile

    import numpy as np
    import torch
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    from safetensors.numpy import save_file

    token = hub.token.encode()
    events = "runs/events.out.tfevents.1700000000.host.1.0"
    wrapped = base64.b64encode(b"{'token': '" + token + b"'}")
    cases = {  # folder name: (kind, file, its content)
        "safetensors-metadata": ("classifier", "model.safetensors", None),
        "pt-pickle": ("detector", "best.pt", None),
        "pt-deflated-member": ("detector", "best.pt", None),
        "base64": ("classifier", "metrics.json", json.dumps({"note": base64.b64encode(token).decode()})),
        "base64-offset-1": ("classifier", "metrics.json", json.dumps({"n": base64.b64encode(b"a" + token).decode()})),
        "base64-offset-2": ("classifier", "metrics.json", json.dumps({"n": base64.b64encode(b"ab" + token).decode()})),
        "base64-urlsafe": (
            "classifier",
            "metrics.json",
            json.dumps({"n": base64.urlsafe_b64encode(b"~~" + token).decode()}),
        ),
        "base64-wrapped": ("classifier", "runs/results.csv", b"\n".join(wrapped[i : i + 16] for i in range(0, 99, 16))),
        "hex": ("classifier", "metrics.json", json.dumps({"note": token.hex()})),
        "hex-upper": ("classifier", "recipe.yaml", f"note: {token.hex().upper()}\n"),
        "utf-16-le": ("classifier", events, tf_events(b"\x00\x01" + hub.token.encode("utf-16-le"))),
        "utf-16-be": ("classifier", events, tf_events(hub.token.encode("utf-16-be"))),
        "gzip": ("classifier", events, tf_events(b"head" + gzip.compress(b"x" * 1000 + token))),
        "zlib": ("classifier", events, tf_events(b"head" + zlib.compress(b"y" * 1000 + token))),
        "png-ztxt": ("classifier", "plot.png", None),
        "file-name": ("classifier", "runs/events.out.tfevents." + hub.token, tf_events()),
    }
    folders = []
    for name, (kind, file, content) in cases.items():
        folder = tiny_folder(tmp_path / name, kind, card_extra="![plot](plot.png)\n" if name == "png-ztxt" else "")
        path = folder / file
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "safetensors-metadata":
            save_file({"head.weight": np.zeros((6, 8), np.float32)}, str(path), metadata={"note": hub.token})
        elif name == "pt-pickle":
            torch.save({"model": None, "train_args": {"note": hub.token}}, path)
        elif name == "pt-deflated-member":
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("best/data.pkl", b"x" * 100 + token)
        elif name == "png-ztxt":
            info = PngInfo()
            info.add_text("Comment", hub.token, zip=True)
            Image.new("RGB", (8, 8)).save(path, pnginfo=info)
            assert token not in path.read_bytes()  # only its compressed copy is in the file
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        folders.append((kind, folder))

    results, output = push_each(hub, tmp_path / "home", folders)
    for name, (kind, file, _) in cases.items():
        result = results[name]
        assert result.get("error") == "ValueError", (name, result)
        assert "token" in result["message"], (name, result)
        assert (file if name != "file-name" else "runs/events.out.tfevents.") in result["message"], (name, result)
    assert hub.token not in output
    assert hub_requests(hub) == []


SPACE_APP = "import gradio\n"


def test_push_space_refuses_the_token_in_an_encoding_before_anything_is_sent(hub, tmp_path):
    import base64

    source = tmp_path / "source"
    (source / "hybrid").mkdir(parents=True)
    (source / "app.py").write_text(SPACE_APP)
    shutil.copy(REPO / "requirements.txt", source / "requirements.txt")
    (source / "hybrid" / "__init__.py").write_text(f"KEY = {base64.b64encode(b'k=' + hub.token.encode())!r}\n")
    code = (
        "from hybrid.publish import push_space\n"
        f"push_space('{ORG}/space', classifier='{ORG}/c', detector='{ORG}/d', source_dir={str(source)!r})\n"
    )
    result = run(hub.client_env(tmp_path / "home"), "-c", code)
    assert result.returncode == 1
    assert "ValueError" in result.stderr and "hybrid/__init__.py" in result.stderr and "token" in result.stderr
    assert hub.token not in result.stdout + result.stderr
    assert hub_requests(hub) == []


def test_pushed_recipe_metrics_and_events_carry_no_local_path(hub, tmp_path):
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file
    from torch.utils.tensorboard import SummaryWriter

    folder = tiny_folder(tmp_path / "models" / "classifier")
    weights = {"head.weight": np.arange(48, dtype=np.float32).reshape(6, 8)}
    save_file(weights, str(folder / "model.safetensors"), metadata={"source": str(folder / "checkpoints" / "best")})
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    assert recipe["output"] == str(folder.resolve())  # what the trainers save, and push sent as it was
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": 0.5, "output": str(folder), "data": "/srv/x"}))
    writer = SummaryWriter(str(folder / "runs"))  # as train/classifier.py logs its recipe
    writer.add_text("recipe", json.dumps({"output": str(folder), "pretrained": str(Path.home() / "w.pt")}), 0)
    writer.add_scalar("val/accuracy", 0.5, 0)
    writer.add_hparams({"output": str(folder), "lr": 0.1}, {"hparam/val_accuracy": 0.5}, run_name="hparams")
    writer.close()
    before = digest(folder)

    repo, _ = pushed(hybrid_cli(hub.client_env(tmp_path / "home"), "push", "classifier", str(folder), f"{ORG}/clf"))
    files = [f for f in repo_files(hub, "model", repo) if f != ".gitattributes"]
    assert sum("tfevents" in f for f in files) == 2
    for path in files:
        data = pushed_bytes(hub, repo, path)
        for local in local_paths(folder):
            assert local.encode() not in data, (path, local)
    assert yaml.safe_load(pushed_bytes(hub, repo, "recipe.yaml"))["output"] == "classifier"
    metrics = json.loads(pushed_bytes(hub, repo, "metrics.json"))
    assert metrics == {"val_accuracy": 0.5, "output": "classifier", "data": "x"}
    (tmp_path / "model.safetensors").write_bytes(pushed_bytes(hub, repo, "model.safetensors"))
    with safe_open(str(tmp_path / "model.safetensors"), "np") as pulled:
        assert pulled.metadata() == {"source": "classifier/checkpoints/best"}
        assert (pulled.get_tensor("head.weight") == weights["head.weight"]).all()
    assert digest(folder) == before  # the folder itself was only read

    # the pushed events still load in TensorBoard (records and checksums intact) and say the same, relatively
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    texts = []
    for path in (p for p in files if "tfevents" in p):
        copy = tmp_path / "pulled" / path
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(pushed_bytes(hub, repo, path))
        events = list(EventFileLoader(str(copy)).Load())
        assert len(events) >= 2
        texts += [str(event) for event in events]
    assert any("classifier" in text and "w.pt" in text for text in texts)


def test_pushed_detector_folder_carries_no_local_path_and_best_pt_still_loads(hub, trained_detector, tmp_path):
    before = digest(trained_detector)
    assert str(trained_detector.parent).encode() in (trained_detector / "best.pt").read_bytes()  # Ultralytics' args
    repo, _ = pushed(
        hybrid_cli(hub.client_env(tmp_path / "home"), "push", "detector", str(trained_detector), f"{ORG}/det")
    )
    pulled = tmp_path / "pulled"
    for path in repo_files(hub, "model", repo):
        data = pushed_bytes(hub, repo, path)
        for local in local_paths(trained_detector):
            assert local.encode() not in data, (path, local)
        (pulled / path).parent.mkdir(parents=True, exist_ok=True)
        (pulled / path).write_bytes(data)
    assert yaml.safe_load((pulled / "recipe.yaml").read_text())["output"] == "detector"
    assert digest(trained_detector) == before
    check = (
        "import json, sys\nfrom ultralytics import YOLO\nmodel = YOLO(sys.argv[1])\n"
        "print('ARGS ' + json.dumps({k: str(v) for k, v in model.ckpt['train_args'].items()}))\n"
    )
    done = run({**hub.client_env(tmp_path / "home"), "YOLO_OFFLINE": "1"}, "-c", check, str(pulled / "best.pt"))
    assert done.returncode == 0, done.stderr[-3000:]
    args = json.loads(done.stdout.split("ARGS ", 1)[1])
    assert args["data"] == "detector.work/yolo/data.yaml"
    assert args["imgsz"] == "64"


def test_a_card_whose_metadata_uses_yaml_aliases_is_refused_before_it_is_expanded(tmp_path):
    """huggingface_hub reads a card's front matter with PyYAML's aliases on: a 500-byte 'billion laughs' card
    would be gigabytes to anything that walks it. Refused with one line before that parser sees it."""
    from hybrid.publish import check_model_card

    laughs = "\n".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9))
    (tmp_path / "README.md").write_text(f'---\nl0: &l0 ["lol"]\n{laughs}\n---\n# card\n')
    with pytest.raises(
        ValueError, match=r"README\.md: the YAML metadata does not parse: line 2: YAML aliases"
    ) as error:
        check_model_card("classifier", tmp_path)
    assert "\n" not in str(error.value)


# --- issue 29, item 4 (second probe): the Space sends what git tracks, events are events, more token encodings ---


def tf_events(*payloads: bytes) -> bytes:
    """A TensorBoard event file as its writers frame it: the file-version event first, then `payloads` as further
    records (each framed by its length, a checksum of it, and a checksum of the record)."""
    import struct

    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    out = b""
    for record in (event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString(), *payloads):
        header = struct.pack("<Q", len(record))
        out += header + struct.pack("<I", masked_crc32c(header)) + record + struct.pack("<I", masked_crc32c(record))
    return out


# Pushes each Space source (JSON argv) in one interpreter; one RESULT line per source: the commit or the error.
PUSH_SPACES = r"""
import json, sys
from hybrid.publish import push_space
for source in json.loads(sys.argv[1]):
    name = source.rsplit("/", 1)[-1]
    try:
        info = push_space("hybrid-org/" + name, classifier="hybrid-org/tiny-c", detector="hybrid-org/tiny-d",
                          source_dir=source)
        print("RESULT " + json.dumps({"source": name, "commit": info.oid}), flush=True)
    except Exception as error:
        print("RESULT " + json.dumps({"source": name, "error": type(error).__name__, "message": str(error)}))
"""

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def space_source(folder: Path, files: dict[str, str], tracked: list[str] | None = None) -> Path:
    """A Space source folder: app.py, requirements.txt, hybrid/__init__.py and `files`; with `tracked`, a git
    checkout whose index holds those three and the `tracked` names (nothing is committed)."""
    (folder / "hybrid").mkdir(parents=True)
    (folder / "app.py").write_text(SPACE_APP)
    shutil.copy(REPO / "requirements.txt", folder / "requirements.txt")
    (folder / "hybrid" / "__init__.py").write_text('"""hybrid"""\n')
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    if tracked is not None:
        subprocess.run(["git", "init", "-q", str(folder)], check=True)
        names = ["app.py", "requirements.txt", "hybrid/__init__.py", *tracked]
        subprocess.run(["git", "-C", str(folder), "add", "--", *names], check=True)
    return folder


def test_push_space_sends_only_what_git_tracks_and_refuses_symlinks_untracked_code_and_local_paths(hub, tmp_path):
    home = tmp_path / "home"
    bashrc = tmp_path / "dotfiles" / ".bashrc"
    bashrc.parent.mkdir()
    bashrc.write_text(f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n")
    settings = f"AWS_SECRET_ACCESS_KEY = {AWS_SECRET!r}\n"
    careless = space_source(
        tmp_path / "careless",
        {"hybrid/core.py": "X = 1\n", "hybrid/local_settings.py": settings, ".gitignore": "hybrid/local_settings.py\n"},
        tracked=["hybrid/core.py", ".gitignore"],
    )
    (careless / "hybrid" / "rc.py").symlink_to(bashrc)
    subprocess.run(["git", "-C", str(careless), "add", "hybrid/rc.py"], check=True)  # git tracks the link itself
    untracked = space_source(tmp_path / "untracked", {"hybrid/local_settings.py": settings}, tracked=[])
    linked = space_source(tmp_path / "linked", {})  # not a git checkout: every .py file, but never a link
    (linked / "hybrid" / "rc.py").symlink_to(bashrc)
    local = space_source(
        tmp_path / "local", {"hybrid/where.py": f"DATA = {str(tmp_path / 'hands')!r}\n"}, ["hybrid/where.py"]
    )
    clean = space_source(
        tmp_path / "clean",
        {"hybrid/core.py": "X = 1\n", "hybrid/notes.txt": "not code: never pushed\n", "hybrid/cli/main.py": "Y = 2\n"},
        tracked=["hybrid/core.py", "hybrid/cli/main.py"],
    )
    results, _ = push_each(
        hub,
        home,
        [("classifier", tiny_folder(tmp_path / "tiny-c")), ("detector", tiny_folder(tmp_path / "tiny-d", "detector"))],
    )
    assert all("commit" in r for r in results.values()), results
    sent_before = len(hub_requests(hub))

    sources = [careless, untracked, linked, local, clean]
    done = run(hub.client_env(home), "-c", PUSH_SPACES, json.dumps([str(s) for s in sources]))
    assert done.returncode == 0, done.stderr[-4000:]
    results = {r["source"]: r for r in map(json.loads, re.findall(r"^RESULT (.*)$", done.stdout, re.M))}
    assert AWS_SECRET not in done.stdout + done.stderr and hub.token not in done.stdout + done.stderr
    for name in ("careless", "untracked", "linked", "local"):
        assert results[name].get("error") == "ValueError", (name, results[name])
        assert "\n" not in results[name]["message"], results[name]
    assert "hybrid/rc.py (a symlink)" in results["careless"]["message"], results["careless"]
    assert "hybrid/local_settings.py (not tracked by git)" in results["careless"]["message"], results["careless"]
    assert "hybrid/local_settings.py (not tracked by git)" in results["untracked"]["message"], results["untracked"]
    assert "hybrid/rc.py (a symlink)" in results["linked"]["message"], results["linked"]
    assert "hybrid/where.py" in results["local"]["message"] and "local path" in results["local"]["message"]
    for name in ("careless", "untracked", "linked", "local"):
        assert not hub.store.exists("space", f"{ORG}/{name}"), name
    assert "commit" in results["clean"], results["clean"]
    assert sorted(repo_files(hub, "space", f"{ORG}/clean")) == [
        ".gitattributes",
        "README.md",
        "app.py",
        "hybrid/__init__.py",
        "hybrid/cli/main.py",
        "hybrid/core.py",
        "hybrid_space.json",
        "requirements.txt",
    ]
    assert len(hub_requests(hub)) > sent_before


def test_push_takes_tensorboard_events_only_where_tensorboard_writes_them_and_refuses_hidden_log_files(hub, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    key = "-----BEGIN OPENSSH PRIVATE" + " KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    strays = {  # folder: {file: content}
        "events-anywhere": {"notes/events.out.tfevents.id_rsa": key.encode()},
        "events-top-not-events": {"events.out.tfevents.id_rsa": key.encode()},
        "events-not-events": {"runs/events.out.tfevents.1700000000.host.1.0": key.encode()},
        "events-bad-checksum": {"logs/events.out.tfevents.1": tf_events()[:8] + b"\0\0\0\0" + tf_events()[12:]},
        "hidden-log-files": {"runs/x/.env.png": b"AWS=1\n", "logs/.credentials.jpg": b"AWS=2\n"},
    }
    folders = []
    for name, files in strays.items():
        folder = tiny_folder(tmp_path / name)
        for file, content in files.items():
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_bytes(content)
        folders.append(("classifier", folder))
    good = tiny_folder(tmp_path / "events-real")
    writer = SummaryWriter(str(good / "runs" / "x"))
    writer.add_scalar("val/accuracy", 0.5, 0)
    writer.close()
    written = next((good / "runs" / "x").iterdir())
    shutil.copy(written, good / written.name)  # the top level and logs/ are where TensorBoard logs are looked for
    (good / "logs").mkdir()
    shutil.copy(written, good / "logs" / written.name)
    (good / "runs" / "x" / "events.out.tfevents.0.framed").write_bytes(tf_events())
    folders.append(("classifier", good))

    results, output = push_each(hub, tmp_path / "home", folders)
    for name, files in strays.items():
        assert results[name].get("error") == "ValueError", (name, results[name])
        for file in files:
            assert file in results[name]["message"], (name, results[name])
        assert "BEGIN OPENSSH" not in output
        assert not hub.store.exists("model", f"{ORG}/{name}"), name
    assert "commit" in results["events-real"], results["events-real"]
    pushed_events = [f for f in repo_files(hub, "model", f"{ORG}/events-real") if "tfevents" in f]
    assert sorted(pushed_events) == sorted(
        [written.name, f"logs/{written.name}", f"runs/x/{written.name}", "runs/x/events.out.tfevents.0.framed"]
    )


FAKE_TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def _hostile_encodings(token: str) -> dict[str, tuple[str, bytes]]:
    """case: (pushed file, its bytes), each hiding `token` in an encoding the first probe did not try."""
    import base64
    import codecs
    import gzip
    import struct

    raw = token.encode()

    def deflate(data: bytes, wbits: int) -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
        return packer.compress(data) + packer.flush()

    def safetensors_with(header_json: str) -> bytes:
        header = header_json.encode()
        header += b" " * (-len(header) % 8)
        return struct.pack("<Q", len(header)) + header + b"\0" * 4

    escaped = "".join(f"\\u{ord(c):04x}" for c in token)
    tensor = '"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    mime = base64.encodebytes(zlib.compress(b"{'token': '" + raw + b"'}\n" * 3))
    return {
        "config.json, every character a \\u escape": ("config.json", ('{"token": "' + escaped + '"}').encode()),
        "config.json, one \\u escape": ("config.json", ('{"token": "\\u0068' + token[1:] + '"}').encode()),
        "safetensors metadata, \\u escapes": (
            "model.safetensors",
            safetensors_with(
                '{"__metadata__":{"hub_token":"' + escaped.upper().replace("\\U", "\\u") + '"},' + tensor + "}"
            ),
        ),
        "zlib, 512-byte window (libpng's small images)": ("plot.png", b"\x89PNG" + deflate(raw * 3, 9)),
        "zlib, 4 KiB window": ("metrics.json", deflate(raw, 12)),
        "raw deflate, the whole file": ("model.safetensors", deflate(raw, -15)),
        "raw deflate after a few binary bytes": ("best.pt", b"\x80\x02\x00\xff\x10" + deflate(b"k=" + raw, -15)),
        "base64 of gzip": (
            "metrics.json",
            json.dumps({"blob": base64.b64encode(gzip.compress(raw)).decode()}).encode(),
        ),
        "base64 of zlib, MIME line breaks": ("recipe.yaml", b"blob: |\n  " + mime.replace(b"\n", b"\n  ")),
        "base64, JSON \\n escapes every 20 characters": (
            "metrics.json",
            json.dumps({"b": "\n".join(base64.b64encode(raw).decode()[i : i + 20] for i in range(0, 60, 20))}).encode(),
        ),
        "url-safe base64 cut by spaces": (
            "runs/results.csv",
            b" ".join(base64.urlsafe_b64encode(raw)[i : i + 8] for i in range(0, 52, 8)),
        ),
        "token cut by a line break": ("README.md", f"key: {token[:15]}\n{token[15:]}\n".encode()),
        "base32": ("metrics.json", base64.b32encode(b"t=" + raw)),
        "base32, lower case": ("metrics.json", base64.b32encode(raw).lower()),
        "percent-encoded": ("README.md", "".join(f"%{b:02X}" for b in raw).encode()),
        "percent-encoded twice": ("metrics.json", "".join(f"%25{b:02X}" for b in raw).encode()),
        "a list of character codes": ("metrics.json", json.dumps({"key": list(raw)}).encode()),
        "rot13": ("config.json", codecs.encode(token, "rot13").encode()),
        "reversed": ("config.json", token[::-1].encode()),
        "Python \\x escapes": (
            "hybrid/keys.py",
            ("KEY = '" + "".join(f"\\x{ord(c):02x}" for c in token) + "'\n").encode(),
        ),
        "YAML \\U escapes": ("recipe.yaml", ('note: "' + "".join(f"\\U{ord(c):08X}" for c in token) + '"\n').encode()),
        "HTML character references": ("README.md", "".join(f"&#{ord(c)};" for c in token).encode()),
    }


@pytest.mark.parametrize("case", list(_hostile_encodings(FAKE_TOKEN)))
def test_refuse_token_finds_the_token_in_escapes_small_window_zlib_raw_deflate_and_base64_of_compressed(case):
    from hybrid.publish_checks import refuse_token

    relative, data = _hostile_encodings(FAKE_TOKEN)[case]
    with pytest.raises(ValueError, match=rf"^refusing to push: {re.escape(relative)} contains your Hub token") as error:
        refuse_token(relative, data, FAKE_TOKEN)
    assert FAKE_TOKEN not in str(error.value) and "\n" not in str(error.value)


def test_refuse_token_lets_ordinary_files_through(tmp_path):
    """What a push really sends (weights, plots, JSON with escapes, the project's own code) is not refused."""
    import io

    import numpy as np
    from PIL import Image
    from safetensors.numpy import save_file

    from hybrid.publish_checks import refuse_token

    rng = np.random.default_rng(0)
    save_file(
        {"w": rng.standard_normal((512, 1024)).astype(np.float32)}, str(tmp_path / "w.safetensors"), {"format": "pt"}
    )
    plot = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(plot, "PNG")
    files = {
        "model.safetensors": (tmp_path / "w.safetensors").read_bytes(),
        "plot.png": plot.getvalue(),
        "config.json": json.dumps({"label_names": ["ü", "✋", "fist\n"], "note": "\\u0068f_"}).encode(),
        "random.bin": rng.integers(0, 256, 2**20, dtype=np.uint8).tobytes(),
        "hybrid/publish_checks.py": (REPO / "hybrid" / "publish_checks.py").read_bytes(),
        "tests/test_hub.py": Path(__file__).read_bytes(),
    }
    for relative, data in files.items():
        refuse_token(relative, data, FAKE_TOKEN)


def test_push_refuses_the_token_as_json_escapes_in_config_and_weights_metadata(hub, tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    escaped = "".join(f"\\u{ord(c):04x}" for c in hub.token)
    config = tiny_folder(tmp_path / "escaped-config")
    (config / "config.json").write_text('{"architecture": "resnet50", "num_classes": 6, "token": "' + escaped + '"}')
    weights = tiny_folder(tmp_path / "escaped-metadata")
    save_file(
        {"head.weight": np.zeros((6, 8), np.float32)},
        str(weights / "model.safetensors"),
        metadata={"note": json.dumps({"token": "\\u0068" + hub.token[1:]})},
    )
    results, output = push_each(hub, tmp_path / "home", [("classifier", config), ("classifier", weights)])
    for name, file in (("escaped-config", "config.json"), ("escaped-metadata", "model.safetensors")):
        assert results[name].get("error") == "ValueError", (name, results[name])
        assert f"{file} contains your Hub token" in results[name]["message"], results[name]
    assert hub.token not in output
    assert hub_requests(hub) == []
