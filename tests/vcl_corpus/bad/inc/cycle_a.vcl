# Part of bad/include_cycle.vcl: a includes b, b includes a.
include "cycle_b.vcl";
