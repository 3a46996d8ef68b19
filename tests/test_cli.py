import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from megadelta.cli import main, parse_size
from megadelta.engine import Engine
from megadelta.sampling import SamplingParams

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def megadelta(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "megadelta", *args], input=stdin, capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return Engine.load(tiny_checkpoint, backend="reference", device="cpu")


def test_help_lists_every_command_without_importing_torch():
    probe = ("import sys; from megadelta.cli import build_parser; "
             "print(build_parser(None).format_help()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV,
                         check=True).stdout
    for command in ("generate", "chat", "make-checkpoint", "serve", "bench", "perplexity", "examples:"):
        assert command in out
    assert out.split()[-1] == "False"


def test_parse_size():
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("500MiB") == 500 * 2**20
    assert parse_size("1.5kb") == 1500
    assert parse_size("4096") == 4096


def test_generate_prints_the_engines_token_ids(engine, tiny_checkpoint):
    result = megadelta("generate", "--model", str(tiny_checkpoint), "--raw", "--max-tokens", "8",
                       "--temperature", "0", "--print-token-ids", "Hello")
    assert result.returncode == 0, result.stderr
    expected = engine.generate("Hello", SamplingParams(max_tokens=8)).token_ids
    assert json.loads(result.stdout) == expected


def test_generate_streams_the_chat_answer(engine, tiny_checkpoint):
    result = megadelta("generate", "--model", str(tiny_checkpoint), "--max-tokens", "6",
                       "--temperature", "1", "--seed", "5", "--system", "Be brief.", "-",
                       stdin="What is 2+2?")
    assert result.returncode == 0, result.stderr
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    expected = engine.chat(messages, SamplingParams(max_tokens=6, temperature=1.0, seed=5))
    assert result.stdout == expected.text + "\n"


def test_make_checkpoint_writes_a_loadable_model(tmp_path):
    out = tmp_path / "ckpt"
    result = megadelta("make-checkpoint", "--config", "tiny", "--seed", "3",
                       "--layout", "conditional_generation", "--shard-size", "10MB", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and (out / "model.safetensors.index.json").is_file()
    assert len(Engine.load(out, device="cpu").generate("Hi", SamplingParams(max_tokens=2)).token_ids) == 2

    again = megadelta("make-checkpoint", "--config", "tiny", str(out))
    assert again.returncode == 2 and "not an empty directory" in again.stderr


def test_broken_model_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    result = megadelta("generate", "--model", str(tmp_path), "Hi")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not valid JSON" in result.stderr


@pytest.mark.parametrize("args, code, message", [
    (["generate", "--model", "{tiny}", "--max-tokens", "4", "--max-seq-len", "3", "Hello there"],
     1, "context holds 3"),
    (["generate", "--model", "{tiny}", "--top-p", "1.5", "Hi"], 2, "--top-p must be in (0, 1]"),
    (["generate", "--model", "{tiny}", "--max-tokens", "-1", "Hi"], 2, "--max-tokens must be"),
    (["generate", "--model", "{tiny}", "--raw", "--system", "S", "Hi"], 2, "--system needs the chat"),
    (["generate", "--model", "{tiny}", "--backend", "megakernel", "--device", "cpu", "Hi"], 1, "CUDA"),
    (["generate", "--model", "{missing}", "Hi"], 1, "no config.json"),
    (["make-checkpoint", "--config", "no-such-preset", "{out}"], 2, "neither a preset"),
    (["make-checkpoint", "--shard-size", "lots", "{out}"], 2, "not a size"),
])
def test_user_errors_exit_with_a_message(capsys, tmp_path, tiny_checkpoint, args, code, message):
    paths = {"tiny": tiny_checkpoint, "missing": tmp_path / "missing", "out": tmp_path / "out"}
    with pytest.raises(SystemExit) as exit_:
        main([a.format(**paths) for a in args])
    assert exit_.value.code == code
    assert message in capsys.readouterr().err


def on_terminal(text: str) -> str:
    return text.replace("\n", "\r\n")


def test_chat_session(engine, tiny_checkpoint):
    # Seeded sampling: greedy answers of the random model are all blank lines.
    params = SamplingParams(max_tokens=5, temperature=1.0, seed=0)
    first = engine.chat([{"role": "user", "content": "Hello"}], params).text
    second = engine.chat([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": first},
                          {"role": "user", "content": "More"}], params).text
    after_reset = engine.chat([{"role": "user", "content": "More"}], params).text
    assert second != after_reset  # otherwise the test could not tell history from none

    chat = pexpect.spawn(sys.executable, ["-m", "megadelta", "chat", "--model", str(tiny_checkpoint),
                                          "--max-tokens", "5", "--temperature", "1", "--seed", "0"],
                         cwd=str(REPO), env=ENV, encoding="utf-8", timeout=120)
    try:
        chat.expect_exact(">>> ")
        chat.sendline("Hello")
        chat.expect_exact(on_terminal(first))
        chat.expect_exact(">>> ")
        chat.sendline("More")
        chat.expect_exact(on_terminal(second))
        chat.expect_exact(">>> ")
        chat.sendline("/reset")
        chat.expect_exact("(conversation cleared)")
        chat.sendline("More")
        chat.expect_exact(on_terminal(after_reset))
        chat.expect_exact(">>> ")
        chat.sendline("/exit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close()
    assert chat.exitstatus == 0


def test_chat_ctrl_c_stops_the_answer_not_the_session(tiny_checkpoint):
    chat = pexpect.spawn(sys.executable, ["-m", "megadelta", "chat", "--model", str(tiny_checkpoint),
                                          "--max-tokens", "3000", "--ignore-eos",
                                          "--temperature", "1", "--seed", "0"],
                         cwd=str(REPO), env=ENV, encoding="utf-8", timeout=120)
    try:
        chat.expect_exact(">>> ")
        chat.sendline("Tell me a long story")
        chat.expect_exact("story")  # the terminal's echo
        chat.expect(r"\S")  # the answer has started
        chat.sendintr()
        chat.expect_exact("[stopped]")
        chat.expect_exact(">>> ")
        chat.sendintr()  # at the prompt: a hint first...
        chat.expect_exact("Ctrl-C again")
        chat.sendintr()  # ...then quit
        chat.expect(pexpect.EOF)
    finally:
        chat.close()
    assert chat.exitstatus == 0
