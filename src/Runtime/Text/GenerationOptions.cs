namespace Llama.Compiled;

/// <summary>Options of one <see cref="TextGenerator.Generate"/> call.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate after the prompt. Default 256.</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>How each token is chosen.</summary>
    public SamplingOptions Sampling { get; init; } = new();
}
