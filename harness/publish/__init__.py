"""Publishing results: leaderboards with the papers' numbers, confidence intervals, a static site, and the gate."""
