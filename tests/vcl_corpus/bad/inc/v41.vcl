# Part of bad/include_higher_version.vcl: 4.1 inside a 4.0 program.
vcl 4.1;
