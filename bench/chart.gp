# SPDX-License-Identifier: BSD-3-Clause
# The benchmark chart (bench/run.sh calls it): signatures per second of each contender
# and their ratio to the floor (a bare tss2-esys loop on the same TPM), P-256 and RSA-2048;
# with tlsfile, a third panel: TLS 1.3 handshakes/s with the TPM key over the same server
# with a software key, per server and TPM path (direct on swtpm / through tpm2-abrmd).
# gnuplot -e "datafile='latest.dat'; tlsfile='latest-tls.dat'; outfile='latest.png'; subtitle='...'" chart.gp
if (!exists("datafile")) datafile = 'latest.dat'
if (!exists("outfile")) outfile = 'latest.png'
if (!exists("subtitle")) subtitle = ''
rows = exists("tlsfile") ? 3 : 2

set terminal pngcairo size 1100,(rows == 3 ? 1080 : 760) font "sans,10"
set output outfile
set multiplot layout rows,1 title "tpmkeys: signatures per second on swtpm (medians)\n".subtitle
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set xtics rotate by -20 noenhanced
set yrange [0:*]

set ylabel "signatures / s"
plot datafile using 2:xtic(1) title "ECDSA P-256" lc rgb "#3572b0", \
     '' using 3 title "RSA-2048" lc rgb "#d9822b"

set ylabel "ratio to the floor (per run, median)"
set yrange [0:1.6]
set key top left
set arrow 1 from graph 0, first 0.95 to graph 1, first 0.95 nohead dt 2 lc rgb "#2a9d3f"
set style textbox opaque noborder
set label 1 "target 0.95 (no PIN)" at graph 0.99, first 1.03 right front boxed tc rgb "#2a9d3f"
set arrow 2 from graph 0, first 0.5 to graph 1, first 0.5 nohead dt 3 lc rgb "#a03030"
set label 2 "target 0.5 (PIN)" at graph 0.99, first 0.55 right front boxed tc rgb "#a03030"
plot datafile using 4:xtic(1) title "ECDSA P-256" lc rgb "#3572b0", \
     '' using 5 title "RSA-2048" lc rgb "#d9822b"

if (rows == 3) {
    unset arrow
    unset label
    set ylabel "TLS 1.3 handshakes/s,\nTPM key / software key"
    set yrange [0:1.3]
    set arrow 1 from graph 0, first 0.75 to graph 1, first 0.75 nohead dt 2 lc rgb "#2a9d3f"
    set label 1 "target 0.75 (P-256)" at graph 0.99, first 0.82 right front boxed tc rgb "#2a9d3f"
    plot tlsfile using 2:xtic(1) title "ECDSA P-256" lc rgb "#3572b0", \
         '' using 3 title "RSA-2048" lc rgb "#d9822b"
}
unset multiplot
