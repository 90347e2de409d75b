using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using Llama.Compiled;
using Llama.Compiled.Tools;
using Llama.Compiled.LlamaCpp;

namespace LlamaBench;

/// <summary>
/// <c>--tokenizers</c>: encoding throughput of the byte-level BPE tokenizers (Llama 3, Qwen3 from ../shared/models/tokenizers)
/// beside llama.cpp's tokenizer (LLamaSharp, llama_tokenize) on the same text, and the time to load tokenizer.json: as the
/// first thing a fresh process does (child processes of this program, default runtime settings), and later in a process.
/// </summary>
/// <remarks>
/// Texts: 1 MB of English (this repository's README and docs, repeated) and 1 MB of mixed scripts (the shared corpus,
/// 35 strings in Latin, Cyrillic, CJK, Arabic, Devanagari, emoji, code, repeated). Each measured run encodes with a
/// freshly loaded tokenizer, so its piece cache starts empty (a warm cache is several times faster on repeated text);
/// llama.cpp keeps no cache. The ids of both are compared. Median of the runs.
/// </remarks>
internal static class TokenizerBench
{
    private const int TextBytes = 1 << 20;

    public static int Run(int runs)
    {
        string repo = FindRepoRoot();
        string tokenizers = Path.GetFullPath(Path.Combine(repo, "..", "shared", "models", "tokenizers"));
        string english = Repeat(string.Join("\n\n", new[] { Path.Combine(repo, "README.md") }
            .Concat(Directory.GetFiles(Path.Combine(repo, "docs"), "*.md")).Select(File.ReadAllText)));
        string[] corpus;
        using (JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(tokenizers, "corpus.json"))))
            corpus = doc.RootElement.EnumerateArray().Select(e => e.GetString()!).ToArray();
        string mixed = Repeat(string.Join("\n", corpus));

        Console.WriteLine($"Byte-level BPE tokenizers: {runs} runs, median; {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}");
        Console.WriteLine();
        Console.WriteLine("| tokenizer | load tokenizer.json, fresh process (median) | its range | load, later in a process (median) |");
        Console.WriteLine("|---|---:|---:|---:|");
        var loaded = new Dictionary<string, ByteLevelBpeTokenizer>();
        foreach (string name in new[] { "llama3", "qwen3" })
        {
            string path = Path.Combine(tokenizers, name, "tokenizer.json");
            // The first load of a process, as an app's: each in a child process of its own (warm file cache).
            var firsts = new List<double>();
            for (int r = 0; r < Math.Max(runs, 5); r++)
                firsts.Add(SpawnLoadChild(name));
            loaded[name] = LlamaTokenizers.LoadTokenizerJson(path);
            var times = new List<double>();
            for (int r = 0; r < runs; r++)
            {
                long t = Stopwatch.GetTimestamp();
                LlamaTokenizers.LoadTokenizerJson(path);
                times.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            }
            Console.WriteLine($"| {name} ({new FileInfo(path).Length / 1e6:F1} MB) | {Median(firsts):F0} ms | {firsts.Min():F0}–{firsts.Max():F0} ms | {Median(times):F0} ms |");
        }

        Console.WriteLine();
        Console.WriteLine("| tokenizer | text | tokens | Llama.Compiled MB/s | llama.cpp MB/s | ratio | same ids |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---|");
        foreach (string name in new[] { "llama3", "qwen3" })
        {
            ByteLevelBpeTokenizer tokenizer = loaded[name];
            string gguf = Path.Combine(Path.GetTempPath(), $"llama-compiled-tokenizer-bench-{name}.gguf");
            var shape = new LlamaModelShape(HiddenSize: 64, IntermediateSize: 128, LayerCount: 1, HeadCount: 4, KvHeadCount: 2, HeadDim: 16,
                VocabSize: tokenizer.VocabularySize, MaxContext: 256, RmsNormEps: 1e-5f, RopeTheta: 10000f, TiedEmbeddings: true,
                BosTokenId: tokenizer.BeginningOfSentenceId ?? 0, EosTokenIds: [tokenizer.EndOfSentenceId ?? 0]);
            GgufWriter.WriteLlama(gguf, shape, t => RandomLlama.Tensor(shape, 1, t), GgufBpeVocabulary.FromTokenizer(tokenizer));
            try
            {
                using var llama = new LlamaCppOracle(gguf, contextSize: 256);
                foreach ((string label, string text) in new[] { ("English", english), ("mixed scripts", mixed) })
                {
                    var ours = new List<double>();
                    var theirs = new List<double>();
                    IReadOnlyList<int> ourIds = [];
                    int[] theirIds = [];
                    for (int r = 0; r < runs; r++)
                    {
                        ByteLevelBpeTokenizer fresh = LlamaTokenizers.LoadTokenizerJson(Path.Combine(tokenizers, name, "tokenizer.json"));
                        long t = Stopwatch.GetTimestamp();
                        ourIds = fresh.EncodeToIds(text, addSpecialTokens: false);
                        ours.Add(Stopwatch.GetElapsedTime(t).TotalSeconds);
                        t = Stopwatch.GetTimestamp();
                        theirIds = llama.Tokenize(text, addSpecial: false, parseSpecial: true);
                        theirs.Add(Stopwatch.GetElapsedTime(t).TotalSeconds);
                    }
                    double mb = Encoding.UTF8.GetByteCount(text) / 1e6;
                    double ourRate = mb / Median(ours), theirRate = mb / Median(theirs);
                    Console.WriteLine($"| {name} | 1 MB {label} | {ourIds.Count:N0} | {ourRate:F1} | {theirRate:F1} | {ourRate / theirRate:F2}× | {(ourIds.SequenceEqual(theirIds) ? "yes" : $"no ({theirIds.Length:N0} tokens)")} |");
                }
            }
            finally
            {
                File.Delete(gguf);
            }
        }
        return 0;
    }

    public const string LoadChildFlag = "--tokenizer-load-child";

    /// <summary>Runs this program as a child that loads one tokenizer.json and prints the milliseconds it took.</summary>
    private static double SpawnLoadChild(string name)
    {
        string self = Environment.ProcessPath ?? "dotnet";
        var start = new ProcessStartInfo { FileName = self, RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            start.ArgumentList.Add(typeof(TokenizerBench).Assembly.Location);
        start.ArgumentList.Add(LoadChildFlag);
        start.ArgumentList.Add(name);
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {self}");
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0 || !double.TryParse(output.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double ms))
            throw new InvalidOperationException($"tokenizer load child exited with {process.ExitCode}: {error.Result.Trim()} {output.Trim()}");
        return ms;
    }

    /// <summary>The child: the first thing this process does is load the tokenizer.</summary>
    public static int RunLoadChild(string name)
    {
        string path = Path.Combine(FindRepoRoot(), "..", "shared", "models", "tokenizers", name, "tokenizer.json");
        long t = Stopwatch.GetTimestamp();
        LlamaTokenizers.LoadTokenizerJson(path);
        Console.WriteLine(Stopwatch.GetElapsedTime(t).TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture));
        return 0;
    }

    private static string Repeat(string text)
    {
        var builder = new StringBuilder(TextBytes + text.Length);
        while (Encoding.UTF8.GetByteCount(builder.ToString()) < TextBytes)
            builder.Append(text).Append('\n');
        // Cut at a character boundary close to 1 MB.
        string all = builder.ToString();
        int chars = all.Length;
        while (Encoding.UTF8.GetByteCount(all.AsSpan(0, chars)) > TextBytes)
            chars -= Math.Max(1, (Encoding.UTF8.GetByteCount(all.AsSpan(0, chars)) - TextBytes) / 4);
        if (chars > 0 && char.IsHighSurrogate(all[chars - 1]))
            chars--;
        return all[..chars];
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }

    private static string FindRepoRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")))
                return dir;
        }
        throw new InvalidOperationException("Llama.Compiled.sln not found above " + AppContext.BaseDirectory);
    }
}
