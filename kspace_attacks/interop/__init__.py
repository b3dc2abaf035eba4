"""Interoperability with other attack libraries: kspace-attacks' attacks behind their APIs.

Each submodule wraps the core attacks for one library and needs that library's optional extra;
``import kspace_attacks.interop`` itself imports none of them. Submodules depend on the core
modules only (threat, losses, attacks, ...), never on :mod:`kspace_attacks.adapters`.
"""
