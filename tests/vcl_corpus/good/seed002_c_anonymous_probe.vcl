# Seed 002: the anonymous probe syntax (`vcl 4.0;` added).
vcl 4.0;

backend mybackend1 {
    .host = "127.0.0.1";
    .probe = {
        .window = 5;
        .threshold = 3;
    }
}
