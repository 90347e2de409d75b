using System;
using System.Globalization;
using System.IO;
using System.Linq;
using Llama.Compiled.LlamaCpp;
using Llama.Compiled.Tools;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Package.Tests;

/// <summary>
/// Llama 3.1/3.2 GGUF files store their RoPE scaling as the tensor rope_freqs.weight. A random-weight Llama-3-shaped GGUF
/// with the factors llama.cpp's converter writes for rope_scaling {llama3, factor 32, low 1, high 4, original 8192} is
/// compiled from the file alone by a throwaway project (the targets copy the factors into the header) and run; its
/// logits at positions up to 299 and its greedy continuation must be llama.cpp's on the same file. llama.cpp on the same
/// weights without rope_freqs.weight shows that the scaling changes those logits far more than the tolerance.
/// </summary>
[Collection(SlowTests.Name)]
public class GgufRopeFreqsTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(3);

    /// <summary>Llama 3.2 1B's head (64 wide, theta 500000) on a small residual stream; untied, so output.weight is read too.</summary>
    private static readonly LlamaModelShape Shape = new(HiddenSize: 128, IntermediateSize: 256, LayerCount: 2, HeadCount: 2, KvHeadCount: 1,
        HeadDim: 64, VocabSize: 512, MaxContext: 512, RmsNormEps: 1e-5f, RopeTheta: 500000f, TiedEmbeddings: false, BosTokenId: 1, EosTokenIds: [2]);

    private const int Seed = 312;
    private const int PromptLength = 300;
    private const int GreedySteps = 16;
    private static readonly int[] CheckedPositions = [0, 63, 127, 255, PromptLength - 1];

    /// <summary>As the F32 oracle tests: max |difference| relative to the largest logit.</summary>
    private const float Tolerance = 1e-4f;

    /// <summary>
    /// Feeds the prompt one token at a time, printing the logits at the checked positions ("logits P: v v v ..."), then the
    /// greedy continuation ("greedy: t t t"), then the last prompt token's logits from one batched prefill ("batched: ...").
    /// </summary>
    private const string Program = """
        using System.Globalization;
        using Llama.Compiled;

        int[] prompt = args[1].Split(',').Select(int.Parse).ToArray();
        int[] positions = args[2].Split(',').Select(int.Parse).ToArray();
        using var model = Llama3Scaled.Load(args[0]);
        using var session = model.CreateSession();
        string Row(ReadOnlySpan<float> logits) => string.Join(' ', logits.ToArray().Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
        int ArgMax(ReadOnlySpan<float> logits) { int best = 0; for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i; return best; }

        ReadOnlySpan<float> last = default;
        for (int p = 0; p < prompt.Length; p++)
        {
            last = session.Forward(prompt[p]);
            if (positions.Contains(p))
                Console.WriteLine($"logits {p}: {Row(last)}");
        }
        var greedy = new List<int>();
        for (int step = 0; step < int.Parse(args[3]); step++)
        {
            greedy.Add(ArgMax(last));
            last = session.Forward(greedy[^1]);
        }
        Console.WriteLine("greedy: " + string.Join(' ', greedy));
        session.Reset();
        Console.WriteLine("batched: " + Row(session.Forward(prompt)));

        [LlamaModel("llama3-rope-freqs.gguf")]
        partial class Llama3Scaled;
        """;

    [Fact]
    public void ALlama3GgufWithRopeFreqsCompilesFromTheFileAndMatchesLlamaCpp()
    {
        string app = Paths.NewTempFolder("gguf-rope-freqs");
        try
        {
            float[] factors = GgufWriter.Llama3RopeFrequencyFactors(Shape.HeadDim, Shape.RopeTheta, factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192);
            string gguf = Path.Combine(app, "llama3-rope-freqs.gguf");
            string unscaled = Path.Combine(app, "unscaled.bin"); // not .gguf: the app compiles from one file only
            WriteModel(gguf, factors);
            WriteModel(unscaled, ropeFrequencyFactors: null);
            WriteProject(app, gguf);

            Tool.Result build = Tool.Run(log, "dotnet", $"build -c {Paths.Configuration} --disable-build-servers", app, Limit);
            Tool.AssertNoWarnings(build);
            string header = File.ReadAllText(Assert.Single(Directory.GetFiles(Path.Combine(app, "obj"), "llama3-rope-freqs.*.gguf-header.json", SearchOption.AllDirectories)));
            Assert.Contains("\"ropeFrequencyFactors\": [" + string.Join(", ", factors.Select(f => f.ToString("R", CultureInfo.InvariantCulture))) + "]", header);

            int[] prompt = Enumerable.Range(0, PromptLength).Select(i => 3 + (7 * i + 5) % (Shape.VocabSize - 3)).ToArray();
            Tool.Result run = Tool.Run(log, "dotnet",
                $"\"{Path.Combine(app, "bin", Paths.Configuration, "net10.0", "GgufApp.dll")}\" \"{gguf}\" {string.Join(',', prompt)} {string.Join(',', CheckedPositions)} {GreedySteps}",
                app, Limit);
            string[] lines = run.StdOut.ReplaceLineEndings("\n").Split('\n', StringSplitOptions.RemoveEmptyEntries);

            float[][] expected, withoutScaling;
            int[] expectedGreedy = new int[GreedySteps];
            using (var llama = new LlamaCppOracle(gguf, contextSize: Shape.MaxContext))
            {
                expected = llama.TeacherForced(prompt);
                float[] last = expected[^1];
                for (int step = 0; step < GreedySteps; step++)
                {
                    expectedGreedy[step] = LlamaCppOracle.ArgMax(last);
                    last = llama.Forward(expectedGreedy[step]);
                }
            }
            using (var llama = new LlamaCppOracle(unscaled, contextSize: Shape.MaxContext))
                withoutScaling = llama.TeacherForced(prompt);

            foreach (int position in CheckedPositions)
            {
                float[] ours = Row(lines, $"logits {position}: ");
                float scale = expected[position].Max(Math.Abs);
                float diff = MaxAbsDiff(ours, expected[position]);
                float scalingEffect = MaxAbsDiff(withoutScaling[position], expected[position]);
                log.WriteLine($"position {position}: max |ours - llama.cpp| {diff:G3}, max |unscaled - scaled| (llama.cpp) {scalingEffect:G3}, max |logit| {scale:G3}");
                Assert.True(diff <= Tolerance * scale, $"position {position}: logits differ from llama.cpp's by {diff} (> {Tolerance} × {scale})");
                // Scaling leaves the frequencies of the first positions almost unchanged; by 255 it must matter.
                if (position >= 255)
                    Assert.True(scalingEffect > 100 * Tolerance * scale, $"position {position}: rope_freqs.weight changes llama.cpp's logits by only {scalingEffect}");
            }
            Assert.Equal("greedy: " + string.Join(' ', expectedGreedy), lines.Single(l => l.StartsWith("greedy: ", StringComparison.Ordinal)));
            float[] batched = Row(lines, "batched: ");
            Assert.True(MaxAbsDiff(batched, expected[^1]) <= Tolerance * expected[^1].Max(Math.Abs), "batched prefill logits differ from llama.cpp's");
        }
        finally
        {
            Paths.DeleteQuietly(app);
        }
    }

    [Fact]
    public void RopeFreqsBeyondTheEndOfTheFileIsABuildErrorNamingIt()
    {
        string app = Paths.NewTempFolder("gguf-rope-freqs-truncated");
        try
        {
            float[] factors = GgufWriter.Llama3RopeFrequencyFactors(Shape.HeadDim, Shape.RopeTheta, 32, 1, 4, 8192);
            string gguf = Path.Combine(app, "llama3-rope-freqs.gguf");
            WriteModel(gguf, factors);
            // The header is whole; the file ends halfway through rope_freqs.weight, the first tensor's data.
            byte[] bytes = File.ReadAllBytes(gguf);
            int data = bytes.AsSpan().IndexOf(System.Runtime.InteropServices.MemoryMarshal.AsBytes(factors.AsSpan()));
            Assert.True(data > 0);
            File.WriteAllBytes(gguf, bytes[..(data + 64)]);
            WriteProject(app, gguf);

            Tool.Result build = Tool.RunUnchecked(log, "dotnet", $"build -c {Paths.Configuration} --disable-build-servers", app, Limit);
            Assert.NotEqual(0, build.ExitCode);
            string error = build.StdOut.Split('\n').First(l => l.Contains("error LLC1001", StringComparison.Ordinal));
            Assert.Contains(gguf, error);
            Assert.Contains("rope_freqs.weight", error);
            Assert.Contains("truncated", error);
            Assert.DoesNotContain("error CS", build.StdOut);
        }
        finally
        {
            Paths.DeleteQuietly(app);
        }
    }

    private static void WriteModel(string path, float[]? ropeFrequencyFactors) =>
        GgufWriter.WriteLlama(path, Shape, name => RandomLlama.Tensor(Shape, Seed, name), GgufTensorType.F32, RopeLayout.AdjacentPairs,
            RandomLlama.Vocabulary(Shape.VocabSize), "llama3-rope-freqs", ropeFrequencyFactors: ropeFrequencyFactors);

    private static void WriteProject(string folder, string gguf) => GgufBuildTests.WriteProject(folder, gguf, Program);

    private static float[] Row(string[] lines, string prefix) =>
        lines.Single(l => l.StartsWith(prefix, StringComparison.Ordinal))[prefix.Length..]
            .Split(' ').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray();

    private static float MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(b.Length, a.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}
