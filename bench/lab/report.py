"""Prints the medians of bench/lab.sh's runs and the per-node costs."""

import statistics
import sys
from pathlib import Path

UP_TARGET_MS = 3.0
DOWN_TARGET_MS = 2.0


def runs(results: Path, prefix: str) -> list[list[float]]:
    """Each run's times, in ms (the files hold µs)."""
    return [
        [int(x) / 1000 for x in p.read_text().split()]
        for p in sorted(results.glob(f"{prefix}-*"))
    ]


def verdict(per_node: float, target: float) -> str:
    return "ok" if per_node <= target else f"over {target:g}"


def main() -> None:
    results, many = Path(sys.argv[1]), int(sys.argv[2])
    sizes = [int(s) for s in sys.argv[3:]]
    print("medians over the runs; times in ms")
    print(
        f"{'scenario':<22}{'runs':>5}{'up':>8}{'down':>8}{'up/node':>9}{'down/node':>10}"
        f"{'':>3}{'split':>7}{'isolate':>8}{'heal':>6}{'reaped':>8}"
    )
    for n in sizes:
        rows = runs(results, f"one-{n}")
        med = [statistics.median(col) for col in zip(*rows)]
        up, down, split, isolate, heal, reaped = med
        print(
            f"{f'1 lab x {n} nodes':<22}{len(rows):>5}{up:>8.1f}{down:>8.1f}{up / n:>9.2f}{down / n:>10.2f}"
            f"   {split:>7.0f}{isolate:>8.0f}{heal:>6.0f}{reaped:>8.0f}"
            f"   up {verdict(up / n, UP_TARGET_MS)}, down {verdict(down / n, DOWN_TARGET_MS)}"
        )
    if many:
        rows = runs(results, f"many-{many}")
        up, down, reaped = [statistics.median(col) for col in zip(*rows)]
        nodes = many * 3
        print(
            f"{f'{many} labs x 3 at once':<22}{len(rows):>5}{up:>8.0f}{down:>8.0f}{up / nodes:>9.2f}{down / nodes:>10.2f}"
            f"   {'':>21}{reaped:>8.0f}   up {verdict(up / nodes, UP_TARGET_MS)}, down {verdict(down / nodes, DOWN_TARGET_MS)}"
        )
    print("split: disjoint into two halves; isolate: one node; heal: all (each one CLI call)")
    print("up: each run in a fresh throwaway host, started once the kernel has torn down the previous "
          "run's namespaces; its state database already exists (made once per machine, untimed); its "
          "first lab makes the shared gateway, timed")
    print(
        "down: until `lab down` returns (namespaces released); "
        "reaped: until the kernel has freed the last of them (from the start of down)"
    )


if __name__ == "__main__":
    main()
