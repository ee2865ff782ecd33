"""The production chains on one GPU: curation (real-time factor per stage, hours of audio per
GPU-hour) and synthesis (TTS + the round trip on cuda, dialogue-hours per GPU-hour).

    .venv/bin/python bench/gpu.py [--asr-model DIR] [--align-model DIR] [--diarize-pipeline DIR]
                                  [--minutes 10] [--language fr] [--dialogues-per-language 4]
                                  [--only curate|synth]

Curation: bench/curate.py with every model stage on CUDA and the production backends: WhisperX
(batched faster-whisper + wav2vec2 alignment) on the bundled Whisper base unless --asr-model names
a larger CTranslate2 model (offline: a local directory), and pyannote.audio's pipeline when
--diarize-pipeline names a local pipeline directory (else the embedded default, on the GPU).
The WhisperX-alone baseline runs in the same process on the same GPU and file.

Synthesis: bench/synth.py --device cuda: the synthesis stage's throughput against bare TTS (the
TTS engines run on the CPU: espeak and Piper have no GPU path here), then the round trip decoding
on cuda (float16) beside a bare BatchedInferencePipeline pass over the same channels on the same
GPU, with CER per language; --asr-model applies to both. Without CUDA it stops before loading
anything, saying so.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def cuda_problem() -> str | None:
    """Why this machine cannot run the GPU bench (None when it can): torch (alignment,
    diarization) and CTranslate2 (Whisper) must both see a CUDA device."""
    try:
        import torch
        if not torch.cuda.is_available():
            return "torch sees no CUDA device (torch.cuda.is_available() is False)"
    except ImportError as e:
        return f"torch is not importable ({e})"
    try:
        import ctranslate2
        if ctranslate2.get_cuda_device_count() < 1:
            return "CTranslate2 (faster-whisper) sees no CUDA device: a CPU-only ctranslate2 wheel or no driver"
    except ImportError as e:
        return f"ctranslate2 is not importable ({e})"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--asr-model", default=None)
    ap.add_argument("--align-model", default=None)
    ap.add_argument("--diarize-pipeline", default=None)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--language", default="fr")
    ap.add_argument("--dialogues-per-language", type=int, default=4, help="synthesis: dialogues per language")
    ap.add_argument("--only", choices=["curate", "synth"], default=None)
    a = ap.parse_args()
    why = cuda_problem()
    if why:
        print(f"bench/gpu.py needs a CUDA GPU: {why}. Run bench/curate.py and bench/synth.py for the CPU figures.",
              file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parent
    rc = 0
    if a.only in (None, "curate"):
        sets = ["asr.backend=whisperx"]
        if a.asr_model:
            sets.append(f"asr.model={a.asr_model}")
        if a.align_model:
            sets.append(f"asr.align_model={a.align_model}")
        if a.diarize_pipeline:
            sets += ["diarize.backend=pyannote", f"diarize.pipeline={a.diarize_pipeline}"]
        cmd = [sys.executable, str(here / "curate.py"), "--device", "cuda",
               "--minutes", str(a.minutes), "--language", a.language]
        for s in sets:
            cmd += ["--set", s]
        print("== curation:", " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, check=False).returncode
    if a.only in (None, "synth"):
        # throughput over one dialogue per language, then the round trip on cuda vs the bare pass;
        # the old per-channel path is left out (a CPU-era baseline, slow on any device)
        cmd = [sys.executable, str(here / "synth.py"), "--device", "cuda", "--dialogues", "6",
               "--cer-per-language", str(a.dialogues_per_language), "--no-old"]
        if a.asr_model:
            cmd += ["--set", f"asr.model={a.asr_model}"]
        print("== synthesis:", " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, check=False).returncode or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
