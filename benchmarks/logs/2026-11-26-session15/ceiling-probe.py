import torch, time
from megadelta.bench.timing import timed
dev = torch.device("cuda")
x = torch.randn((2 << 30) // 4, dtype=torch.float32, device=dev)
x.sum()
def bw(per_trial, trials=5):
    def trial():
        for _ in range(per_trial): x.sum()
    trial()
    best = min(timed(dev, trial)[1] for _ in range(trials))
    return x.numel() * 4 * per_trial / best / 1e9
for rep in range(6):
    print(rep, "1 sum/trial %.0f" % bw(1), " 10 sums/trial %.0f" % bw(10), " 1 sum/trial %.0f" % bw(1), flush=True)
