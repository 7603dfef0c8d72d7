set datafile separator ','
set terminal pngcairo size 900,600 noenhanced
set key bottom right
set grid
set output 'exp1_budget_sweep.png'
set title 'Budget sweep (kNN, seed 1, random batches of 100)'
set xlabel 'realized cost / best single model cost'
set ylabel 'accuracy / best single model accuracy'
set xrange [0:1.3]
plot for [p in 'per_query threshold ndch ndch_p batch batch_robust batch_gamma'] sprintf("< awk -F, '$1==1 && $2==\"knn\" && $3==\"%s\"' exp1_budget_sweep.csv | sort -t, -k6 -g", p) using 6:8 with linespoints title p, 1 with lines dt 2 lc 'black' title 'best model'
unset xrange
set output 'exp2_batches.png'
set title 'Per-batch predicted spend / cap (kNN, seed 1, N=100, adversarial order, cap 0.5)'
set xlabel 'batch (arrival order)'
set ylabel 'predicted spend / cap'
set key top right
plot for [a in 'batch per_query_matched per_query_safe per_query_guarded inline'] sprintf("< awk -F, '$1==1 && $2==\"knn\" && $3==100 && $4==\"adversarial\" && $5==0.5 && $6==\"%s\"' exp2_batches.csv", a) using 7:8 with linespoints title a, 1 with lines dt 2 lc 'black' title 'cap'
set output 'exp3_robustness.png'
set title 'Robustness: batch accuracy by share of the train part (kNN, mean over seeds and budgets)'
set xlabel 'train fraction'
set ylabel 'accuracy'
set key bottom right
plot for [p in 'batch batch_robust batch_gamma'] sprintf("< awk -F, 'NR > 1 && $2 == \"knn\" && $5 == \"%s\" {g = $3; if (!(g in seen)) {seen[g] = 1; order[++k] = g} if ($6 != \"nan\") {s0[g] += $6; n0[g]++} } END {for (i = 1; i <= k; i++) {g = order[i]; print g \",\" (n0[g] ? s0[g] / n0[g] : \"nan\")}}' exp3_robustness.csv | sort -g", p) using 1:2 with linespoints title p
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
plot "< awk -F, 'NR > 1 && 1 {g = $2; if (!(g in seen)) {seen[g] = 1; order[++k] = g} if ($4 != \"nan\") {s0[g] += $4; n0[g]++} if ($7 != \"nan\") {s1[g] += $7; n1[g]++} } END {for (i = 1; i <= k; i++) {g = order[i]; print g \",\" (n0[g] ? s0[g] / n0[g] : \"nan\") \",\" (n1[g] ? s1[g] / n1[g] : \"nan\")}}' exp4_unseen_models.csv" using 2:xtic(1) title 'deferral AUC', '' using 3 title 'argmax accuracy'
unset yrange
set output 'exp5_capacity.png'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set xlabel ''
set auto x
set title 'Capacity: accuracy with self-hosted slots (kNN, mean over seeds)'
set key top left
set yrange [0.6:1.05]
set ylabel 'accuracy / best single model accuracy'
plot for [a in 'batch per_query_guarded threshold_guarded'] sprintf("< awk -F, 'NR > 1 && $2 == \"knn\" && $5 == \"%s\" {g = $3; if (!(g in seen)) {seen[g] = 1; order[++k] = g} if ($8 != \"nan\") {s0[g] += $8; n0[g]++} } END {for (i = 1; i <= k; i++) {g = order[i]; print g \",\" (n0[g] ? s0[g] / n0[g] : \"nan\")}}' exp5_capacity.csv", a) using 2:xtic(1) title a
unset yrange
set output 'exp6_allocation.png'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set xlabel ''
set auto x
set title 'Instance allocation: test accuracy of each plan (kNN, mean over seeds)'
set key top left
set yrange [0.6:1.05]
set ylabel 'accuracy / best single model accuracy'
plot for [plan in 'optimized uniform proportional'] sprintf("< awk -F, 'NR > 1 && $2 == \"knn\" && $4 == \"%s\" {g = \"GPUs \" $3; if (!(g in seen)) {seen[g] = 1; order[++k] = g} if ($9 != \"nan\") {s0[g] += $9; n0[g]++} } END {for (i = 1; i <= k; i++) {g = order[i]; print g \",\" (n0[g] ? s0[g] / n0[g] : \"nan\")}}' exp6_allocation.csv", plan) using 2:xtic(1) title plan
unset yrange
set output 'exp7_learning.png'
set style data linespoints
set title 'Drift at query 2000: accuracy per window of 200 queries (UniRoute, mean over seeds)'
set xlabel 'stream position (queries)'
set ylabel 'accuracy'
set key bottom left
set arrow 1 from 2000, graph 0 to 2000, graph 1 nohead dt 2 lc 'black'
plot for [a in 'static online oracle'] sprintf("< awk -F, 'NR > 1 && $2 == \"drift\" && $3 == \"%s\" && $4 == \"accuracy\" {g = $5; if (!(g in seen)) {seen[g] = 1; order[++k] = g} if ($7 != \"nan\") {s0[g] += $7; n0[g]++} } END {for (i = 1; i <= k; i++) {g = order[i]; print g \",\" (n0[g] ? s0[g] / n0[g] : \"nan\")}}' exp7_learning_curve.csv | sort -g", a) using ($1 + 100):2 with linespoints title a
unset arrow 1
set output 'exp7_new_model.png'
set title 'New model (cold start): its share of the task it is best at, per window of 200 queries (mean over seeds)'
set xlabel 'stream position (queries)'
set ylabel 'share of the task'
set key bottom right
set yrange [0:1]
plot for [a in 'online static_full'] sprintf("< awk -F, 'NR > 1 && $2 == \"new_model\" && $3 == \"%s\" && $4 == \"new_model_task_share\" {g = $5; if (!(g in seen)) {seen[g] = 1; order[++k] = g} if ($7 != \"nan\") {s0[g] += $7; n0[g]++} } END {for (i = 1; i <= k; i++) {g = order[i]; print g \",\" (n0[g] ? s0[g] / n0[g] : \"nan\")}}' exp7_learning_curve.csv | sort -g", a) using ($1 + 100):2 with linespoints title a, 0.5 with lines dt 2 lc 'black' title 'majority'
unset yrange
