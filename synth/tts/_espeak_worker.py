"""espeak worker process (see tandem.synth.tts.espeak._Worker): JSON request lines in, a JSON header line and
raw little-endian int16 PCM out, until stdin closes."""

import json
import sys

from tandem.synth.tts.espeak import raw_synth


def main() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        r = json.loads(line)
        pcm, events, err = raw_synth(r["text"], r["voice"], r["pitch"], r["rate"])
        out.write((json.dumps({"samples": len(pcm), "events": events, "error": err}) + "\n").encode())
        out.write(pcm.astype("<i2").tobytes())
        out.flush()


if __name__ == "__main__":
    main()
