"""espeak worker process (see synth.tts.espeak._Worker): a fork server.

The parent initialises libespeak-ng once and never speaks; each session is served by a forked
child, a copy of that pristine state, so a session's audio does not depend on earlier sessions.
A child reads JSON request lines and answers each with a JSON header line and raw little-endian
int16 PCM; {"end": true} ends the session (answered "end"); end of input stops everything.
"""

import json
import os

from synth.tts.espeak import _LOCK, _espeak, raw_synth

_EOF = 3


def _write_all(out, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[out.write(view):]


def _serve(inp, out) -> int:
    while True:
        line = inp.readline()  # unbuffered: nothing of the next session is read ahead
        if not line:
            return _EOF
        r = json.loads(line)
        if r.get("end"):
            _write_all(out, b"end\n")
            return 0
        pcm, events, err = raw_synth(r["text"], r["voice"], r["pitch"], r["rate"])
        _write_all(out, (json.dumps({"samples": len(pcm), "events": events, "error": err}) + "\n").encode()
                   + pcm.astype("<i2").tobytes())


def main() -> None:
    with _LOCK:
        _espeak()
    inp = os.fdopen(0, "rb", buffering=0)
    out = os.fdopen(1, "wb", buffering=0)
    while True:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _serve(inp, out)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return


if __name__ == "__main__":
    main()
