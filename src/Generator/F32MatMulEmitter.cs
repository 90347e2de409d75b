using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// The F32 and F16 matrix kernels: per distinct shape, a rows method whose prefill multiplies F32 rows by panels of 64
/// transposed tokens (panel kernels of 6 rows × 64 tokens with Vector512, 6 × 16 with Vector256) and tiles a row block
/// by tokens for what is left (one row × the token tile, or two F32 rows × four tokens), and whose one-token loop is a
/// dot product per row, four rows per pass when the model stays in cache, or 512-bit loads when the CPU has them.
/// </summary>
internal static class F32MatMulEmitter
{
    private const int Width = KernelEmitter.Width; // floats per Vector256

    /// <param name="streams">The one-token loop has the one-row pass for weights that stream from memory: with a four-row
    /// pass too (<c>k.DecodeRows == 4</c>), the running machine's cache size chooses between them.</param>
    public static void Write(SourceWriter w, MatMulKernel k, int tile, bool streams)
    {
        int rows = k.Rows, cols = k.Cols;
        int vectorEnd = cols - cols % Width;
        string[] tokens = Enumerable.Range(0, tile).Select(i => ((char)('a' + i)).ToString()).ToArray();

        w.Line($$"""
            /// <summary>
            /// Rows [rowStart, rowEnd) of y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: {{k.Format}} [{{rows}}, {{cols}}] row-major; x: [tokens, {{cols}}]; y: [tokens, {{rows}}].
            /// </summary>
            """);
        bool half = k.Format == ComputeFormat.F16;
        string signature = half
            ? $"private static void {k.Name}Rows(ReadOnlySpan<byte> w, ReadOnlySpan<float> x, Span<float> y, int tokens, bool accumulate, int rowStart, int rowEnd)"
            : $"private static void {k.Name}Rows(ReadOnlySpan<float> w, {(k.DecodeWide ? "bool lineAligned, " : "")}ReadOnlySpan<float> x, Span<float> y, int tokens, bool accumulate, int rowStart, int rowEnd)";
        w.Line("[MethodImpl(MethodImplOptions.AggressiveOptimization)]");
        using (w.Block(signature))
        {
            w.Line($$"""
                const int Rows = {{rows}}, Cols = {{cols}}, RowBlock = {{k.RowBlock}};
                // The kernel's only bounds check; below, every access is a ref offset within these lengths.
                if (tokens < 0 || rowStart < 0 || rowEnd > Rows || w.Length < Rows * Cols{{(half ? " * 2" : "")}} || x.Length < (long)tokens * Cols || y.Length < (long)tokens * Rows)
                    throw new ArgumentException("{{k.Name}}: a buffer is smaller than its shape.");{{(half ? "\nSpan<float> halfRow = stackalloc float[Cols]; // one weight row widened to F32" : "\nref float w0 = ref MemoryMarshal.GetReference(w);")}}
                ref float x0 = ref MemoryMarshal.GetReference(x);
                ref float y0 = ref MemoryMarshal.GetReference(y);

                """);
            if (k.PrefillPanel)
                WritePanels(w, k);
            string first = k.PrefillPanel ? "panelEnd" : "0";
            w.Line($$"""
                // {{(k.PrefillPanel ? "Tokens after the panels" : "Prefill")}}: rows in blocks of RowBlock (about {{k.RowBlock * k.Cols * (half ? 2 : 4) / 1024}} KB of weights, which stay in cache) and, per block,
                // {{tile}} tokens per pass: each row comes from memory once per chunk of tokens, from cache for the other tiles.
                """);
            using (w.Block("for (int rowBlock = rowStart; rowBlock < rowEnd; rowBlock += RowBlock)"))
            using (w.Block($"for (int t = {first}; t + {tile} <= tokens; t += {tile})"))
            {
                w.Line("ref float xa = ref Unsafe.Add(ref x0, t * Cols);");
                for (int i = 1; i < tile; i++)
                    w.Line($"ref float x{tokens[i]} = ref Unsafe.Add(ref xa, {i} * Cols);");
                w.Line("ref float yt = ref Unsafe.Add(ref y0, t * Rows);");
                if (k.PrefillRows == 2 && tile == 4)
                    WriteTwoRowTile(w);
                else
                    WriteOneRowTile(w, half, cols, vectorEnd, tokens);
            }
            w.Line();
            if (k.DecodeRows == 4 && streams)
            {
                w.Line("// The remaining tokens (all of decode) one at a time. Weights that stay in this machine's last-level cache: four rows");
                w.Line("// per pass, each x vector loaded once for four rows, two independent sums per row to hide FMA latency, one horizontal");
                w.Line("// add tree for four outputs. Weights that stream from memory: one row at a time, one sequential stream per thread,");
                w.Line($"// {k.Accumulators} independent sum(s) per row.");
            }
            else if (k.DecodeRows == 4)
            {
                w.Line("// The remaining tokens (all of decode) one at a time, four rows per pass: each x vector is loaded once for");
                w.Line("// four rows, two independent sums per row hide FMA latency, and one horizontal add tree yields four outputs.");
            }
            else
            {
                w.Line(k.Accumulators > 1
                    ? $"// The remaining tokens (all of decode) one at a time, {k.Accumulators} independent sums per row to hide FMA latency."
                    : "// The remaining tokens (all of decode) one at a time.");
            }
            using (w.Block(k.PrefillPanel ? $"for (int t = tokens - (tokens - panelEnd) % {tile}; t < tokens; t++)" : $"for (int t = tokens - tokens % {tile}; t < tokens; t++)"))
            {
                w.Line("ref float xt = ref Unsafe.Add(ref x0, t * Cols);");
                w.Line("ref float yt = ref Unsafe.Add(ref y0, t * Rows);");
                if (k.DecodeRows == 4 && streams)
                {
                    using (w.Block("if (WeightsFitCache)"))
                    {
                        WriteFourRowDot(w, cols);
                        w.Line("continue;");
                    }
                }
                if (k.DecodeRows == 4 && !streams)
                {
                    WriteFourRowDot(w, cols);
                }
                else
                {
                    if (k.DecodeWide)
                        WriteWideDecode(w);
                    using (w.Block("for (int r = rowStart; r < rowEnd; r++)"))
                    {
                        WriteRow(w, half);
                        WriteDot(w, k.Accumulators, cols, vectorEnd);
                        w.Line("Store(ref Unsafe.Add(ref yt, r), sum, accumulate);");
                    }
                }
            }
        }
        if (k.PrefillPanel)
        {
            w.Line();
            WritePanelKernel(w, k, wide: true);
            w.Line();
            WritePanelKernel(w, k, wide: false);
        }
    }

    /// <summary>Rows in groups of <see cref="PanelRows"/> in both panel kernels.</summary>
    private const int PanelRows = 6;

    /// <summary>In the Rows method: the tokens in panels, each packed once and passed to the panel kernel of the running CPU.</summary>
    private static void WritePanels(SourceWriter w, MatMulKernel k)
    {
        w.Line($$"""
            // Prefill, tokens in panels of TokenPanel.Tokens = 64 (the last one padded when at least {{ForwardPlanner.PanelMinTokens}} tokens remain): x transposed
            // into the thread's panel, column k of every token side by side, so that each weight is loaded once per panel.
            int panelEnd = tokens % TokenPanel.Tokens >= {{ForwardPlanner.PanelMinTokens}} ? tokens : tokens - tokens % TokenPanel.Tokens;
            for (int t = 0; t < panelEnd; t += TokenPanel.Tokens)
            {
                int count = Math.Min(TokenPanel.Tokens, panelEnd - t);
                ref float panel = ref TokenPanel.Pack(x, Cols, t, count);
                if (Vector512.IsHardwareAccelerated)
                    {{k.Name}}Panel512(ref w0, ref panel, ref Unsafe.Add(ref y0, t * Rows), count, accumulate, rowStart, rowEnd);
                else
                    {{k.Name}}Panel256(ref w0, ref panel, ref Unsafe.Add(ref y0, t * Rows), count, accumulate, rowStart, rowEnd);
            }

            """);
    }

    /// <summary>
    /// A panel kernel: rows in groups of six (then one at a time), each group's sums for the panel's tokens in registers
    /// across all of Cols, a broadcast weight times a vector of tokens per FMA. 512-bit: 6 rows × 64 tokens = 24 Vector512
    /// sums, 4 panel loads and 6 broadcasts per 24 FMAs. 256-bit: 6 rows × 16 tokens = 12 Vector256 sums (of 16 registers),
    /// per 16-token slice of the panel.
    /// </summary>
    private static void WritePanelKernel(SourceWriter w, MatMulKernel k, bool wide)
    {
        string vector = wide ? "Vector512" : "Vector256";
        int lanes = wide ? 16 : 8;
        int vectors = wide ? 4 : 2; // per row: 64 tokens, or one 16-token slice
        string[] rowNames = Enumerable.Range(0, PanelRows).Select(i => ((char)('a' + i)).ToString()).ToArray();
        w.Line($$"""
            /// <summary>
            /// Rows [rowStart, rowEnd) of y[t] (+)= W·x[t] for the <paramref name="count"/> tokens of a panel, {{(wide ? "512-bit: 6 rows × 64 tokens per pass in 24 Vector512 sums (4 panel loads and 6 broadcast weights per 24 FMAs; the padding lanes compute zeros that are not stored)" : "256-bit: 6 rows × 16 tokens per pass in 12 Vector256 sums, per 16-token slice of the panel")}}.
            /// W: F32 [{{k.Rows}}, {{k.Cols}}] row-major; panel: [{{k.Cols}}, TokenPanel.Tokens] (x transposed); y: [count, {{k.Rows}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            """);
        using (w.Block($"private static void {k.Name}Panel{(wide ? 512 : 256)}(ref float w0, ref float panel, ref float y, int count, bool accumulate, int rowStart, int rowEnd)"))
        {
            w.Line($$"""
                const int Rows = {{k.Rows}}, Cols = {{k.Cols}}, PanelTokens = TokenPanel.Tokens;
                Span<float> tile = stackalloc float[8 * PanelTokens]; // [{{PanelRows}} rows, PanelTokens]: a pass's sums, unpacked into y in 8 × 8 blocks
                ref float tile0 = ref MemoryMarshal.GetReference(tile);
                int r = rowStart;
                """);
            foreach (int group in new[] { PanelRows, 1 })
            {
                if (group == 1)
                    w.Line($"// The last rows (rowEnd − rowStart not a multiple of {PanelRows}) one at a time.");
                using (w.Block(group == 1 ? "for (; r < rowEnd; r++)" : $"for (; r + {PanelRows} <= rowEnd; r += {PanelRows})"))
                {
                    string[] names = rowNames.Take(group).ToArray();
                    w.Line("ref float ra = ref Unsafe.Add(ref w0, r * Cols);");
                    for (int i = 1; i < group; i++)
                        w.Line($"ref float r{names[i]} = ref Unsafe.Add(ref ra, {i} * Cols);");
                    if (wide)
                    {
                        WritePanelPass(w, vector, lanes, vectors, names, "panel");
                    }
                    else
                    {
                        using (w.Block("for (int slice = 0; slice < count; slice += 16)"))
                        {
                            w.Line("ref float columns = ref Unsafe.Add(ref panel, slice);");
                            WritePanelPass(w, vector, lanes, vectors, names, "columns", "slice");
                        }
                    }
                    w.Line($"TokenPanel.Unpack(ref tile0, {group}, ref Unsafe.Add(ref y, r), Rows, count, accumulate);");
                }
            }
        }
    }

    /// <summary>Sums of the rows <paramref name="rowNames"/> × <paramref name="vectors"/> vectors of tokens over all columns, stored into the tile.</summary>
    private static void WritePanelPass(SourceWriter w, string vector, int lanes, int vectors, string[] rowNames, string columns, string? slice = null)
    {
        foreach (string n in rowNames)
            w.Line($"{vector}<float> {string.Join(", ", Enumerable.Range(0, vectors).Select(j => $"{n}{j} = {vector}<float>.Zero"))};");
        using (w.Block("for (nuint k = 0; k < Cols; k++)"))
        {
            w.Line($"ref float column = ref Unsafe.Add(ref {columns}, k * PanelTokens);");
            w.Line($"{vector}<float> {string.Join(", ", Enumerable.Range(0, vectors).Select(j => $"x{j} = {vector}.LoadUnsafe(ref column{(j == 0 ? "" : $", {j * lanes}")})"))};");
            for (int i = 0; i < rowNames.Length; i++)
            {
                string n = rowNames[i];
                w.Line($"{(i == 0 ? $"{vector}<float> " : "")}weight = {vector}.Create(Unsafe.Add(ref r{n}, k));");
                w.Line(string.Join(" ", Enumerable.Range(0, vectors).Select(j => $"{n}{j} = {vector}.FusedMultiplyAdd(weight, x{j}, {n}{j});")));
            }
        }
        // Row i's j-th vector of tokens goes to tile[i * PanelTokens + j * lanes] (+ the slice's first token).
        string Offset(int i, int j)
        {
            string[] terms = new[] { slice, i == 0 ? null : $"{i} * PanelTokens", j == 0 ? null : $"{j * lanes}" }.Where(term => term is not null).ToArray()!;
            return terms.Length == 0 ? "0" : slice is null ? string.Join(" + ", terms) : terms.Length == 1 ? $"(nuint){slice}" : $"(nuint)({string.Join(" + ", terms)})";
        }
        for (int i = 0; i < rowNames.Length; i++)
            w.Line(string.Join(" ", Enumerable.Range(0, vectors).Select(j => $"{rowNames[i]}{j}.StoreUnsafe(ref tile0, {Offset(i, j)});")));
    }

    /// <summary>The prefill tile for any row: one row × the tile's tokens, one sum per token.</summary>
    private static void WriteOneRowTile(SourceWriter w, bool half, int cols, int vectorEnd, string[] tokens)
    {
        using (w.Block("for (int r = rowBlock; r < Math.Min(rowBlock + RowBlock, rowEnd); r++)"))
        {
            WriteRow(w, half);
            if (vectorEnd > 0)
            {
                w.Line($"Vector256<float> {string.Join(", ", tokens.Select(n => $"s{n} = Vector256<float>.Zero"))};");
                using (w.Block($"for (nuint i = 0; i < {vectorEnd}; i += 8)"))
                {
                    w.Line("Vector256<float> wv = Vector256.LoadUnsafe(ref row, i);");
                    foreach (string n in tokens)
                        w.Line($"s{n} = Vector256.FusedMultiplyAdd(wv, Vector256.LoadUnsafe(ref x{n}, i), s{n});");
                }
                w.Line($"float {string.Join(", ", tokens.Select(n => $"{n} = Vector256.Sum(s{n})"))};");
            }
            else
            {
                w.Line($"float {string.Join(", ", tokens.Select(n => $"{n} = 0f"))};");
            }
            if (vectorEnd < cols)
            {
                using (w.Block($"for (int i = {vectorEnd}; i < Cols; i++)"))
                {
                    w.Line("float wi = Unsafe.Add(ref row, i);");
                    foreach (string n in tokens)
                        w.Line($"{n} += wi * Unsafe.Add(ref x{n}, i);");
                }
            }
            for (int i = 0; i < tokens.Length; i++)
                w.Line($"Store(ref Unsafe.Add(ref yt, {(i == 0 ? "" : $"{i} * Rows + ")}r), {tokens[i]}, accumulate);");
        }
    }

    /// <summary>
    /// The prefill tile for F32 rows of whole vectors: two rows × four tokens, eight independent sums,
    /// enough to keep both FMA ports busy through the 4-cycle FMA latency.
    /// </summary>
    private static void WriteTwoRowTile(SourceWriter w)
    {
        string[] tokens = { "a", "b", "c", "d" };
        using (w.Block("for (int r = rowBlock; r < Math.Min(rowBlock + RowBlock, rowEnd); r += 2)"))
        {
            w.Line("ref float row0 = ref Unsafe.Add(ref w0, r * Cols);");
            w.Line("ref float row1 = ref Unsafe.Add(ref row0, Cols);");
            w.Line($"Vector256<float> {string.Join(", ", tokens.SelectMany(n => new[] { $"{n}0 = Vector256<float>.Zero", $"{n}1 = Vector256<float>.Zero" }))};");
            using (w.Block("for (nuint i = 0; i < Cols; i += 8)"))
            {
                w.Line("Vector256<float> w0v = Vector256.LoadUnsafe(ref row0, i), w1v = Vector256.LoadUnsafe(ref row1, i);");
                foreach (string n in tokens)
                {
                    w.Line($"Vector256<float> x{n}v = Vector256.LoadUnsafe(ref x{n}, i);");
                    w.Line($"{n}0 = Vector256.FusedMultiplyAdd(w0v, x{n}v, {n}0);");
                    w.Line($"{n}1 = Vector256.FusedMultiplyAdd(w1v, x{n}v, {n}1);");
                }
            }
            w.Line("// [row r, row r + 1] × [tokens a, b, c, d]");
            w.Line("Vector128<float> sums0 = KernelMath.Sum4(a0, b0, c0, d0), sums1 = KernelMath.Sum4(a1, b1, c1, d1);");
            for (int i = 0; i < 4; i++)
            {
                string offset = i == 0 ? "r" : $"{i} * Rows + r";
                w.Line($"Store(ref Unsafe.Add(ref yt, {offset}), sums0.GetElement({i}), accumulate);");
                w.Line($"Store(ref Unsafe.Add(ref yt, {offset} + 1), sums1.GetElement({i}), accumulate);");
            }
        }
    }

    /// <summary>y[r..r+4) = four rows · xt, for F32 rows of a multiple of 8 columns (rowStart and rowEnd are multiples of 4).</summary>
    private static void WriteFourRowDot(SourceWriter w, int cols)
    {
        string[] rows = { "a", "b", "c", "d" };
        int pairEnd = cols - cols % 16;
        using (w.Block("for (int r = rowStart; r < rowEnd; r += 4)"))
        {
            w.Line("ref float ra = ref Unsafe.Add(ref w0, r * Cols);");
            for (int i = 1; i < 4; i++)
                w.Line($"ref float r{rows[i]} = ref Unsafe.Add(ref ra, {i} * Cols);");
            w.Line($"Vector256<float> {string.Join(", ", rows.SelectMany(n => new[] { $"{n}0 = Vector256<float>.Zero", $"{n}1 = Vector256<float>.Zero" }))};");
            if (pairEnd > 0)
            {
                using (w.Block($"for (nuint i = 0; i < {pairEnd}; i += 16)"))
                {
                    w.Line("Vector256<float> xLow = Vector256.LoadUnsafe(ref xt, i), xHigh = Vector256.LoadUnsafe(ref xt, i + 8);");
                    foreach (string n in rows)
                    {
                        w.Line($"{n}0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref r{n}, i), xLow, {n}0);");
                        w.Line($"{n}1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref r{n}, i + 8), xHigh, {n}1);");
                    }
                }
            }
            if (pairEnd < cols)
            {
                w.Line($"Vector256<float> xLast = Vector256.LoadUnsafe(ref xt, {pairEnd});");
                foreach (string n in rows)
                    w.Line($"{n}0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref r{n}, {pairEnd}), xLast, {n}0);");
            }
            w.Line("ref float yr = ref Unsafe.Add(ref yt, r);");
            w.Line("Vector128<float> sums = KernelMath.Sum4(a0 + a1, b0 + b1, c0 + c1, d0 + d1);");
            w.Line("(accumulate ? sums + Vector128.LoadUnsafe(ref yr) : sums).StoreUnsafe(ref yr);");
        }
    }

    /// <summary>Points <c>row</c> at weight row r: in place for F32, widened into halfRow for F16.</summary>
    private static void WriteRow(SourceWriter w, bool half)
    {
        if (half)
        {
            w.Line("KernelMath.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(w.Slice(r * Cols * 2, Cols * 2)), halfRow);");
            w.Line("ref float row = ref MemoryMarshal.GetReference(halfRow);");
        }
        else
        {
            w.Line("ref float row = ref Unsafe.Add(ref w0, r * Cols);");
        }
    }

    /// <summary>
    /// The 512-bit one-token loop: four Vector512 sums per row, one whole cache line per load. Taken only when the
    /// rows start cache lines (Cols is a multiple of 16, so all rows do when the first does): a 512-bit load that
    /// straddles two lines costs more than two 256-bit loads.
    /// </summary>
    private static void WriteWideDecode(SourceWriter w)
    {
        w.Line("// With 512-bit vectors and rows that start cache lines, one whole line per load; else the 256-bit loop below.");
        using (w.Block("if (Vector512.IsHardwareAccelerated && lineAligned)"))
        {
            using (w.Block("for (int r = rowStart; r < rowEnd; r++)"))
            {
                w.Line("ref float row = ref Unsafe.Add(ref w0, r * Cols);");
                w.Line("Vector512<float> s0 = Vector512<float>.Zero, s1 = Vector512<float>.Zero, s2 = Vector512<float>.Zero, s3 = Vector512<float>.Zero;");
                using (w.Block("for (nuint i = 0; i < Cols; i += 64)"))
                {
                    for (int a = 0; a < 4; a++)
                    {
                        string offset = a == 0 ? "i" : $"i + {a * 16}";
                        w.Line($"s{a} = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref row, {offset}), Vector512.LoadUnsafe(ref xt, {offset}), s{a});");
                    }
                }
                w.Line("Store(ref Unsafe.Add(ref yt, r), Vector512.Sum((s0 + s1) + (s2 + s3)), accumulate);");
            }
            w.Line("continue;");
        }
    }

    /// <summary>sum = row · xt over Cols, with <paramref name="accumulators"/> independent vector sums.</summary>
    private static void WriteDot(SourceWriter w, int accumulators, int cols, int vectorEnd)
    {
        if (vectorEnd == 0)
        {
            w.Line("float sum = 0f;");
        }
        else
        {
            int step = accumulators * Width;
            int unrolledEnd = vectorEnd - vectorEnd % step;
            w.Line($"Vector256<float> {string.Join(", ", Enumerable.Range(0, accumulators).Select(a => $"s{a} = Vector256<float>.Zero"))};");
            if (unrolledEnd > 0)
            {
                // A native-sized index: constant offsets fold into the loads' addressing, no sign extension per load.
                using (w.Block($"for (nuint i = 0; i < {unrolledEnd}; i += {step})"))
                {
                    for (int a = 0; a < accumulators; a++)
                    {
                        string offset = a == 0 ? "i" : $"i + {a * Width}";
                        w.Line($"s{a} = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref row, {offset}), Vector256.LoadUnsafe(ref xt, {offset}), s{a});");
                    }
                }
            }
            for (int i = unrolledEnd, a = 0; i < vectorEnd; i += Width, a++)
                w.Line($"s{a} = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref row, {i}), Vector256.LoadUnsafe(ref xt, {i}), s{a});");
            w.Line($"float sum = Vector256.Sum({SumTree(accumulators)});");
        }
        if (vectorEnd < cols)
        {
            using (w.Block($"for (int i = {vectorEnd}; i < Cols; i++)"))
                w.Line("sum += Unsafe.Add(ref row, i) * Unsafe.Add(ref xt, i);");
        }
    }

    /// <summary>s0..s(n-1) added pairwise: "(s0 + s1) + (s2 + s3)".</summary>
    private static string SumTree(int n) => n switch
    {
        1 => "s0",
        2 => "s0 + s1",
        3 => "(s0 + s1) + s2",
        _ => "(s0 + s1) + (s2 + s3)",
    };
}
