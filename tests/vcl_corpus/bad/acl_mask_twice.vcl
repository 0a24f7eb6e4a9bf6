# expect: 4:18: /mask only allowed once.
vcl 4.1;
acl a {
    "10.0.0.0/8" / 8;
}
