# expect: 4:5: .../mask is not numeric.
vcl 4.1;
acl a {
    "10.0.0.0/x";
}
