using Xunit;

namespace Llama.Compiled.Generator.Tests;

/// <summary>When <see cref="Snapshot.Verify"/> compares, accepts, or refuses (the variables are read once per call).</summary>
public sealed class SnapshotModeTests
{
    [Theory]
    [InlineData(null, null, "Compare")]
    [InlineData(null, "true", "Compare")]
    [InlineData("0", null, "Compare")]
    [InlineData("1", null, "Update")]
    [InlineData("1", "false", "Update")]
    [InlineData("1", "", "Update")]
    [InlineData("1", "true", "RefuseUpdateInCi")]
    [InlineData("1", "True", "RefuseUpdateInCi")]
    [InlineData("1", "1", "RefuseUpdateInCi")]
    public void UpdatingIsRefusedUnderCi(string? update, string? ci, string expected) =>
        Assert.Equal(expected, Snapshot.ModeFor(update, ci).ToString());
}
