"""Peak memory of scoring answers: logits at answer positions only vs the full ``[B, T, V]`` logits.

    .venv/bin/python benchmarks/answer_logits_memory.py [--batch 16] [--vocab 151936]

The tiny Qwen2-VL reference with its vocabulary widened to Qwen2-VL's 151,936 tokens scores the
answers of ``--batch`` records of a tiny synthetic corpus, once per mode, each in a fresh process;
the peak RSS during scoring above the RSS before it (Linux: the peak is reset through
``/proc/self/clear_refs``) is what the scoring itself costs.
``full`` is what scoring cost before (the model's full logits, cast to fp32); ``answer`` is
:func:`mllm.train.logprobs.answer_logprobs`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(mode: str, batch_size: int, vocab: int) -> None:
    from mllm.data.synth import generate_corpus
    from mllm.models.specs import SPECS
    from mllm.train.encode import encode_records
    from mllm.train.logprobs import answer_logprobs
    from mllm.train.recipe import fresh_reference

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = generate_corpus(size="tiny", seed=0, out=Path(tmp))
        model, processor = fresh_reference(SPECS["tiny-qwen2-vl"])
        model.resize_token_embeddings(vocab, mean_resizing=False)
        records = corpus.select(trainable=True)[:batch_size]
        batch = encode_records(processor, records, corpus.root).batch(range(len(records)))
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _status_kb("VmRSS")
    with torch.no_grad():
        if mode == "full":
            logits = model(**batch.model_inputs()).logits[:, :-1].float()
            targets = batch.labels[:, 1:].clamp(min=0)
            logp = -F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        else:
            logp, _ = answer_logprobs(model, batch)
    peak = _status_kb("VmHWM")
    print(f"{mode}: {len(records)} rows of {batch.input_ids.shape[1]} tokens, "
          f"{int((batch.labels != -100).sum())} answer positions, "
          f"scoring peak +{(peak - before) / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--mode", choices=["full", "answer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        measure(args.mode, args.batch, args.vocab)
        return
    for mode in ("full", "answer"):
        subprocess.run([sys.executable, __file__, "--mode", mode, "--batch", str(args.batch),
                        "--vocab", str(args.vocab)], check=True)


if __name__ == "__main__":
    main()
