"""The table both caption peers print: per setting the peer's and tessera's
medians over the turns, the ratio (above 1: tessera faster), and with several
turns the range of each."""
import statistics


def print_table(peer, runs_peer, runs_tessera, length_label):
    """runs_*: one dict per turn, keyed ("cps", beams, batch) and ("ms", tokens)."""
    print("%-34s %12s %12s %8s" % ("", peer, "tessera", "ratio"))

    def row(label, key, higher_better):
        t = [r[key] for r in runs_peer]
        x = [r[key] for r in runs_tessera]
        mt, mx = statistics.median(t), statistics.median(x)
        ratio = mx / mt if higher_better else mt / mx
        rng = "" if len(t) < 2 else "  (tessera %.3g-%.3g, %s %.3g-%.3g)" % (
            min(x), max(x), peer, min(t), max(t))
        print("%-34s %12.3f %12.3f %7.2fx%s" % (label, mt, mx, ratio, rng))

    for beams in (1, 3):
        for b in (1, 8):
            row("%s, batch %d: captions/s" % ("greedy" if beams == 1 else "beam 3", b),
                ("cps", beams, b), True)
    for L in (5, 20, 40):
        row("greedy, %d %s: ms/caption" % (L, length_label), ("ms", L), False)
