# Seed 002: a named probe reused by a backend (`vcl 4.0;` added).
vcl 4.0;

probe myprobe {
    .window = 5;
    .threshold = 3;
}

backend mybackend1 {
    .host = "127.0.0.1";
    .probe = myprobe;
}
