"""PyTorch scaled_dot_product_attention (fp16 K/V, GQA) decode timing for the same cases as
bench_attention.cu: median µs with cold L2 (a 256 MiB buffer is rewritten before each rep).
Usage: python3 sdpa_bench.py OUT.json [--quick] [--read-flush]  (--read-flush: L2 emptied by
reading 256 MiB instead of writing it, as in bench_attention.cu)"""
import json
import sys

import torch
import torch.nn.functional as F


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "sdpa.json"
    quick = "--quick" in sys.argv
    read_flush = "--read-flush" in sys.argv
    dev = torch.device("cuda")
    flush = torch.full((256 << 20,), 0x5a, dtype=torch.uint8, device=dev)
    flush32 = flush.view(torch.int32)
    shapes = [("llama8b", 32, 8, 128), ("smollm2", 9, 3, 64)]
    contexts = [4096, 32768, 131072] if quick else [4096, 16384, 32768, 131072, 1048576]
    reps = 10 if quick else 25
    rows = []
    for name, hq, hkv, d in shapes:
        for ctx in contexts:
            for batch in (1, 8):
                if ctx > 131072 and batch > 1:
                    continue
                q = torch.randn(batch, hq, 1, d, device=dev, dtype=torch.float16)
                k = torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.float16)
                v = torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.float16)
                f = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                f(); f()
                torch.cuda.synchronize()
                times = []
                for r in range(reps):
                    if read_flush:
                        flush32.max()  # reads 256 MiB, writes one word
                    else:
                        flush.fill_(r & 0xff)
                    a = torch.cuda.Event(enable_timing=True)
                    b = torch.cuda.Event(enable_timing=True)
                    a.record(); f(); b.record()
                    b.synchronize()
                    times.append(a.elapsed_time(b) * 1000.0)
                times.sort()
                us = times[len(times) // 2]
                nbytes = 2 * k.numel() * 2
                rows.append(dict(kernel="sdpa_fp16", shape=name, q_heads=hq, kv_heads=hkv, dim=d,
                                 context=ctx, batch=batch, us=us, bytes=nbytes,
                                 gbs=nbytes / (us * 1e-6) / 1e9))
                print(f"sdpa {name} ctx={ctx} b={batch}: {us:.1f} us", flush=True)
                del k, v, q
                torch.cuda.empty_cache()
    with open(out, "w") as fh:
        json.dump(dict(flush="read" if read_flush else "write", torch=torch.__version__, device=torch.cuda.get_device_name(), rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
