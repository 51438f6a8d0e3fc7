"""`--report FILE.html`: one self-contained page per verb run, to open in a browser and share.

collect.py gathers the data (the verb's --json result plus the model's layers and memory plan),
writer.py renders page.html with page.css and page.js inlined.
"""
from tinyml.html_report.collect import build_page
from tinyml.html_report.writer import write_page

__all__ = ["build_page", "write_page"]
