# expect: 2:1: No backends or directors found in VCL program, at least one is necessary.
vcl 4.1;
sub vcl_recv {
    return (pass);
}
