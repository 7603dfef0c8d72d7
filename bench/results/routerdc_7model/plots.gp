set datafile separator ','
set terminal pngcairo size 900,600 noenhanced
set key bottom right
set grid
set output 'exp4_unseen_models.png'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set xlabel ''
set auto x
set title 'Unseen models: a third of the pool added from validation results (mean over seeds)'
set ylabel 'deferral AUC / argmax accuracy'
set yrange [0:1]
plot "< awk -F, 'NR > 1 && 1 {g = $2; if (!(g in seen)) {seen[g] = 1; order[++k] = g} if ($4 != \"nan\") {s0[g] += $4; n0[g]++} if ($7 != \"nan\") {s1[g] += $7; n1[g]++} } END {for (i = 1; i <= k; i++) {g = order[i]; print g \",\" (n0[g] ? s0[g] / n0[g] : \"nan\") \",\" (n1[g] ? s1[g] / n1[g] : \"nan\")}}' exp4_unseen_models.csv" using 3:xtic(1) title 'argmax accuracy'
unset yrange
