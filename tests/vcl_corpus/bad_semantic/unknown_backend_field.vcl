# expect: 5:6: Unknown field: 'weight' at
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .weight = 3;
}
