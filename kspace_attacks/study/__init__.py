"""The study: transfer sweeps of worst-case k-space perturbations and what they conclude.

- :mod:`.records`: the record schema (every column once; ``delta_* = adv - clean``);
- :mod:`.transfer`: craft on surrogates, evaluate on targets (:func:`transfer`);
- :mod:`.config`, :mod:`.sweep`, :mod:`.journal`: configured, durable, resumable sweeps;
- :mod:`.units`: a sweep's units of work, shared by torchrun ranks; :mod:`.plan`: its
  ``--dry-run`` plan and estimate; :mod:`.progress`: bars on a terminal, log lines otherwise;
- :mod:`.sources`: a sweep's data (embedded, NIfTI, fastMRI files) as batches with ids;
- :mod:`.report` (records and queries), :mod:`.report_io` (their files), :mod:`.perturbations`
  (the perturbed k-space, saved and lazily loaded), :mod:`.plots`: summaries and figures;
- :mod:`.html`, :mod:`.html_panels`: ``report.html``, one self-contained page per result folder;
- :mod:`.artifacts`: statistics of the change a perturbation causes;
- :mod:`.targeted`: insertion of a structure; :mod:`.verdicts`: the study's claims;
- :mod:`.demo`: the demo run on the embedded data.

The study imports the core and the data layer; only the sweep's model resolution imports the
adapters.
"""
