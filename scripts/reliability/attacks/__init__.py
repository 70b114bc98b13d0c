"""Attacks on a live `tealight serve`, one module an area; `adversarial.py` runs them.

Each module registers its attacks with [`harness.attack`]; each attack asserts the fixed
behaviour (status codes, error shapes, bounded memory) and the runner adds the checks every
attack shares: the process is alive after it, `/health` answered within the bound throughout,
and resident memory grew no more than the attack allows.
"""

MODULES = ["grammar", "transport", "responses", "engine"]
