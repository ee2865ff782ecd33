"""DNSMOS P.835 (ONNX models shipped by speechmos) with the session threads set to the caller's share."""

from __future__ import annotations

import numpy as np

DNSMOS_SR = 16000


class Dnsmos:
    """Overall, signal and background MOS of 16 kHz mono speech in [-1, 1]."""

    def __init__(self, threads: int = 1):
        import onnxruntime as ort
        from speechmos.dnsmos import DNSMOS
        from tandem.pipelines.models.registry import dnsmos_dir
        d = dnsmos_dir()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        m = DNSMOS.__new__(DNSMOS)  # speechmos builds sessions with all cores; build ours
        m.primary_model_path = str(d / "sig_bak_ovr.onnx")
        m.onnx_sess = ort.InferenceSession(m.primary_model_path, opts, providers=["CPUExecutionProvider"])
        m.p808_onnx_sess = ort.InferenceSession(str(d / "model_v8.onnx"), opts, providers=["CPUExecutionProvider"])
        self.model = m

    def __call__(self, x16: np.ndarray) -> dict[str, float]:
        x = np.clip(np.asarray(x16, dtype=np.float32), -1.0, 1.0)
        r = self.model(x, DNSMOS_SR, False)
        return {"ovrl": float(r["ovrl_mos"]), "sig": float(r["sig_mos"]), "bak": float(r["bak_mos"])}
