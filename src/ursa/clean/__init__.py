"""The clean stage: relabel / delete / keep with an undo journal and a web page.

Not built yet: this package only reserves the name in the layout of DESIGN.md.
"""
