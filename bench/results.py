#!/usr/bin/env python3
"""results.py RESULTS.md NAME FILE: puts FILE's text between the NAME section markers of
RESULTS.md (<!-- begin NAME --> ... <!-- end NAME -->), appending the section if it is new."""
import sys

path, name, src = sys.argv[1:4]
body = open(src).read().rstrip("\n") + "\n"
begin, end = f"<!-- begin {name} -->\n", f"<!-- end {name} -->\n"
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# vitals benchmarks\n"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = head + begin + body + end + tail
else:
    text = text.rstrip("\n") + "\n\n" + begin + body + end
open(path, "w").write(text)
