#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        printf("sdtune %s\n", SDTUNE_VERSION);
        return 0;
    }
    printf("usage: sdtune [CONFIG]\n");
    return 0;
}
