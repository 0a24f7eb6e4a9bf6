# Part of bad/include_cycle.vcl.
include "cycle_a.vcl";
