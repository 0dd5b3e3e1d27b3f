"""A Python port of the IETF MLS WG interop test runner (see RUNNER.md in the references).

``config`` parses scenario files, ``assign`` sizes and enumerates the runs of a script,
``steps`` implements the 23 actions, ``execute`` plays runs, ``results`` reports them and
``clients`` starts and talks to the client stacks. The entry point is ``interop.run``.
"""
