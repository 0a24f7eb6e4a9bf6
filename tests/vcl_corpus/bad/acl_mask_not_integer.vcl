# expect: 4:16: Expected an integer got 'x'
vcl 4.1;
acl a {
    "10.0.0.0"/x;
}
