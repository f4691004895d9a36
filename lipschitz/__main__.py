"""Command line: ``python -m lipschitz``."""

import sys


def main() -> int:
    print("usage: python -m lipschitz train [options]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
