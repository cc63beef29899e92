"""Channel-name slugs derived from company names, as used by the `customer-{slug}` template."""

from __future__ import annotations

import re
import unicodedata

# Slack channel names are at most 80 characters.
MAX_SLUG_LENGTH = 80

_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")


def slugify(name: str) -> str:
    """Lowercase `name`, fold accents to ASCII and turn each run of other characters into one `-`.

    The result is trimmed of `-` and cut to 80 characters (then trimmed again, so a cut never
    leaves a trailing `-`). A name with no usable characters gives an empty string.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii")
    slug = _NOT_ALLOWED.sub("-", ascii_only.lower()).strip("-")
    return slug[:MAX_SLUG_LENGTH].strip("-")
