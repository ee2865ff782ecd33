"""The production chain on one GPU: real-time factor per stage and hours of audio per GPU-hour.

    .venv/bin/python bench/gpu.py [--asr-model DIR] [--align-model DIR] [--diarize-pipeline DIR]
                                  [--minutes 10] [--language fr]

Runs bench/curate.py with every model stage on CUDA and the production backends: WhisperX
(batched faster-whisper + wav2vec2 alignment) on the bundled Whisper base unless --asr-model names
a larger CTranslate2 model (offline: a local directory), and pyannote.audio's pipeline when
--diarize-pipeline names a local pipeline directory (else the embedded default, on the GPU).
The WhisperX-alone baseline runs in the same process on the same GPU and file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--asr-model", default=None)
    ap.add_argument("--align-model", default=None)
    ap.add_argument("--diarize-pipeline", default=None)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--language", default="fr")
    a = ap.parse_args()
    sets = ["asr.backend=whisperx"]
    if a.asr_model:
        sets.append(f"asr.model={a.asr_model}")
    if a.align_model:
        sets.append(f"asr.align_model={a.align_model}")
    if a.diarize_pipeline:
        sets += ["diarize.backend=pyannote", f"diarize.pipeline={a.diarize_pipeline}"]
    cmd = [sys.executable, str(Path(__file__).with_name("curate.py")), "--device", "cuda",
           "--minutes", str(a.minutes), "--language", a.language]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
