"""Where the time of one 256-px forward pass goes at fp32 and at bf16 (torch.profiler, one thread, batch 8,
on a paper256-config NVIDIA pickle given on the command line): the convolution kernels vs the elementwise work.

usage: python bench/profile_precision.py FILE.pkl"""
import sys

import torch
from latentatlas.runtime import tune_allocator
tune_allocator()
from latentatlas.models.registry import load_generator
from torch.profiler import profile, ProfilerActivity

m = load_generator(sys.argv[1])
torch.set_num_threads(1)
for p in ("fp32", "bf16"):
    m.set_precision(p)
    z = m.sample_z(8, 0)
    with torch.no_grad():
        m(z); m(z)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            m(z)
    ev = prof.key_averages()
    tot = sum(e.self_cpu_time_total for e in ev)
    conv = sum(e.self_cpu_time_total for e in ev if "conv" in e.key or "mkldnn" in e.key)
    print(p, f"total {tot/1e6:.2f} s; convolution kernels {conv/1e6:.2f} s ({100*conv/tot:.0f}%)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
